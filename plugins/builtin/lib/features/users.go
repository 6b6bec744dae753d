package features

import "bytes"

// Users holds the decoded states of one batch's users, found by key, so a
// user's state is decoded once per batch and encoded once at its end
// however many of the user's events the batch has. Its memory is kept from
// batch to batch: once it has seen its largest batch, it does not allocate.
type Users struct {
	users []User
	n     int
	table []int32 // open addressing over users: index+1, 0 = empty
	arena []byte  // the keys, back to back
}

// User is one user's entry of a batch.
type User struct {
	State State
	// Row is the last row whose event changed State, -1 if none did: the
	// row to store the new state with.
	Row int
	// Err is set when the stored state could not be decoded.
	Err error

	hash     uint64
	off, len int
}

// Reset forgets the previous batch's users.
func (u *Users) Reset() {
	u.n = 0
	clear(u.table)
	u.arena = u.arena[:0]
}

// Get returns the entry of key, and whether it is new in this batch: the
// caller then decodes the user's stored state into it. key is copied; the
// entry is valid until the next Get.
func (u *Users) Get(key []byte) (user *User, fresh bool) {
	if 2*(u.n+1) > len(u.table) {
		u.grow()
	}
	h := hashBytes(key)
	mask := len(u.table) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		k := u.table[i]
		if k == 0 {
			if u.n == len(u.users) {
				u.users = append(u.users, User{})
			}
			e := &u.users[u.n]
			u.n++
			u.table[i] = int32(u.n)
			e.hash, e.off, e.len = h, len(u.arena), len(key)
			e.Row, e.Err = -1, nil
			u.arena = append(u.arena, key...)
			return e, true
		}
		if e := &u.users[k-1]; e.hash == h && bytes.Equal(u.arena[e.off:e.off+e.len], key) {
			return e, false
		}
	}
}

func (u *Users) grow() {
	size := max(64, 2*len(u.table))
	u.table = make([]int32, size)
	mask := size - 1
	for k := 0; k < u.n; k++ {
		i := int(u.users[k].hash) & mask
		for u.table[i] != 0 {
			i = (i + 1) & mask
		}
		u.table[i] = int32(k + 1)
	}
}

// Each calls fn for every user of the batch, in order of first appearance.
func (u *Users) Each(fn func(*User)) {
	for k := 0; k < u.n; k++ {
		fn(&u.users[k])
	}
}
