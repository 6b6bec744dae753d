package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The first byte of every Badger key says what the key is. See FORMAT.md.
const (
	kindMeta   = 'm'
	kindState  = 's'
	kindOffset = 'o'
	kindLog    = 'l'

	// sep ends a namespace name or a source name. Neither may contain it,
	// so whatever bytes follow (an entity key, a partition) are unambiguous.
	sep = 0x00

	// valueFormat is the first byte of every state value, so the value
	// layout can change without a new FormatVersion for the whole store.
	valueFormat = 1
	// valueHeader is valueFormat plus LastEvent.
	valueHeader = 1 + 8

	// maxBadgerKey is Badger's own limit on a key (txn.go, maxKeySize).
	maxBadgerKey = 65000
	// maxNamespace bounds a namespace name; names are identifiers, not data.
	maxNamespace = 64

	// recordFormat is the first byte of every log record.
	recordFormat = 1
	// maxChunk bounds one log chunk, well under Badger's 1 MiB value
	// threshold, so records stay in the LSM tree (where their deletion frees
	// the space at compaction) rather than the value log (which needs GC).
	maxChunk = 512 << 10
	// logKeyLen is 'l', seq (8 bytes) and chunk index (4 bytes).
	logKeyLen = 1 + 8 + 4
	// opDelete flags a deletion in a log record.
	opDelete = 1
)

// metaFormatKey holds the store's FormatVersion.
var metaFormatKey = []byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n'}

// validateNamespace checks a namespace name against [a-z0-9_-]{1,64},
// optionally followed by a partition suffix ".p<N>" (PartitionNamespace),
// which a configured name cannot carry, so a partition's namespace never
// collides with a step's own.
func validateNamespace(name string) error {
	if name == "" {
		return errors.New("namespace name is empty")
	}
	if len(name) > maxNamespace {
		return fmt.Errorf("namespace name %q is %d bytes, at most %d are allowed", name, len(name), maxNamespace)
	}
	base := name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		base = name[:i]
		if _, err := strconv.ParseUint(strings.TrimPrefix(name[i+1:], "p"), 10, 31); err != nil || !strings.HasPrefix(name[i+1:], "p") || base == "" {
			return fmt.Errorf("namespace name %q: use lowercase letters, digits, _ and - only", name)
		}
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return fmt.Errorf("namespace name %q: use lowercase letters, digits, _ and - only", name)
		}
	}
	return nil
}

// PartitionNamespace names the part of namespace ns that holds the state of
// one source partition: ns + ".p" + partition. A step whose state follows
// Kafka partitions (a changelog-backed step) keeps each partition's keys
// apart, so the partition's state can be dropped or rebuilt on its own.
func PartitionNamespace(ns string, partition int32) string {
	return ns + ".p" + strconv.Itoa(int(partition))
}

// validate checks a Namespace's name and TTL.
func (ns Namespace) validate() error {
	if err := validateNamespace(ns.Name); err != nil {
		return err
	}
	switch {
	case ns.TTL < 0:
		return fmt.Errorf("namespace %q: ttl %s is negative", ns.Name, ns.TTL)
	case !ns.EventTime && ns.TTL > 0 && ns.TTL < minWallTTL:
		// Badger stores expiry in whole unix seconds: a shorter TTL would
		// expire at the next second boundary, anywhere from 0 to 1s later.
		return fmt.Errorf("namespace %q: wall-clock ttl %s is below %s (Badger expires entries in whole seconds)", ns.Name, ns.TTL, minWallTTL)
	}
	return nil
}

// ValidateKey reports whether key can be an entity key in namespace ns,
// for callers that take keys before they reach a commit (a plugin's random
// writes), so a bad one is refused where it is made.
func ValidateKey(ns string, key []byte) error { return validateKey(ns, key) }

// validateKey checks an entity key for use in namespace ns.
func validateKey(ns string, key []byte) error {
	if len(key) == 0 {
		return errors.New("entity key is empty")
	}
	if n := 2 + len(ns) + len(key); n > maxBadgerKey {
		return fmt.Errorf("entity key is %d bytes, at most %d fit in namespace %q", len(key), maxBadgerKey-2-len(ns), ns)
	}
	return nil
}

// validateSource checks a source name for an offset key.
func validateSource(source, partition string) error {
	switch {
	case source == "":
		return errors.New("offset source is empty")
	case strings.IndexByte(source, sep) >= 0:
		return fmt.Errorf("offset source %q contains a NUL byte", source)
	case 2+len(source)+len(partition) > maxBadgerKey:
		return fmt.Errorf("offset source and partition are %d bytes, at most %d are allowed", len(source)+len(partition), maxBadgerKey-2)
	}
	return nil
}

// nsPrefix is the prefix shared by every state key of namespace ns:
// 's' ns 0x00. It is never a prefix of another namespace's keys because
// names cannot contain 0x00.
func nsPrefix(ns string) []byte {
	p := make([]byte, 0, len(ns)+2)
	p = append(p, kindState)
	p = append(p, ns...)
	return append(p, sep)
}

// appendStateKey appends the Badger key of (ns, key) to dst.
func appendStateKey(dst []byte, ns string, key []byte) []byte {
	dst = append(dst, kindState)
	dst = append(dst, ns...)
	dst = append(dst, sep)
	return append(dst, key...)
}

// offsetKey is the Badger key of a source's partition.
func offsetKey(source, partition string) []byte {
	k := make([]byte, 0, len(source)+len(partition)+2)
	k = append(k, kindOffset)
	k = append(k, source...)
	k = append(k, sep)
	return append(k, partition...)
}

// encodeValue lays a state value out as header + plugin bytes, in a new
// slice.
func encodeValue(val []byte, lastEvent int64) []byte {
	b := make([]byte, valueHeader+len(val))
	b[0] = valueFormat
	binary.BigEndian.PutUint64(b[1:valueHeader], uint64(lastEvent))
	copy(b[valueHeader:], val)
	return b
}

// decodeValue splits a stored value. The returned slice aliases v.
func decodeValue(v []byte) (val []byte, lastEvent int64, err error) {
	if len(v) < valueHeader {
		return nil, 0, fmt.Errorf("state value is %d bytes, shorter than its %d-byte header", len(v), valueHeader)
	}
	if v[0] != valueFormat {
		return nil, 0, fmt.Errorf("state value has format %d, this agent reads format %d", v[0], valueFormat)
	}
	return v[valueHeader:], int64(binary.BigEndian.Uint64(v[1:valueHeader])), nil
}

func encodeOffset(off int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(off))
}

func decodeOffset(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("offset value is %d bytes, want 8", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func encodeFormat(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

func decodeFormat(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("format version value is %d bytes, want 4", len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

// logKey is the Badger key of chunk idx of log record seq. Big-endian
// numbers make Badger's order the replay order.
func logKey(seq uint64, idx uint32) []byte {
	k := make([]byte, logKeyLen)
	k[0] = kindLog
	binary.BigEndian.PutUint64(k[1:9], seq)
	binary.BigEndian.PutUint32(k[9:], idx)
	return k
}

func parseLogKey(k []byte) (seq uint64, idx uint32, err error) {
	if len(k) != logKeyLen || k[0] != kindLog {
		return 0, 0, fmt.Errorf("malformed log key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:9]), binary.BigEndian.Uint32(k[9:]), nil
}

// appendRecord encodes one commit's writes as a log record:
//
//	record = format(1) uvarint(len ns) ns expiresAt(u64) uvarint(count) op*
//	op     = flags(1) uvarint(len key) key [ lastEvent(i64) uvarint(len value) value ]
//
// the bracketed part only when flags has no opDelete. expiresAt is the
// commit's wall-clock expiry (unix seconds, 0 = never), shared by its writes.
func appendRecord(dst []byte, ns string, writes []Write, expiresAt uint64) []byte {
	dst = append(dst, recordFormat)
	dst = binary.AppendUvarint(dst, uint64(len(ns)))
	dst = append(dst, ns...)
	dst = binary.BigEndian.AppendUint64(dst, expiresAt)
	dst = binary.AppendUvarint(dst, uint64(len(writes)))
	for _, w := range writes {
		if w.Delete {
			dst = append(dst, opDelete)
			dst = binary.AppendUvarint(dst, uint64(len(w.Key)))
			dst = append(dst, w.Key...)
			continue
		}
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(len(w.Key)))
		dst = append(dst, w.Key...)
		dst = binary.BigEndian.AppendUint64(dst, uint64(w.LastEvent))
		dst = binary.AppendUvarint(dst, uint64(len(w.Value)))
		dst = append(dst, w.Value...)
	}
	return dst
}

// recordSize is the exact encoded size of appendRecord's output.
func recordSize(ns string, writes []Write) int {
	n := 1 + uvarintLen(uint64(len(ns))) + len(ns) + 8 + uvarintLen(uint64(len(writes)))
	for _, w := range writes {
		n += 1 + uvarintLen(uint64(len(w.Key))) + len(w.Key)
		if !w.Delete {
			n += 8 + uvarintLen(uint64(len(w.Value))) + len(w.Value)
		}
	}
	return n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// recordOp is one decoded write of a log record.
type recordOp struct {
	key      []byte // entity key, aliases the record
	c        cached // val aliases the record
	deleteOp bool
}

// decodeRecord parses a log record. Keys and values alias rec.
func decodeRecord(rec []byte) (ns string, ops []recordOp, err error) {
	r := recReader{b: rec}
	if f := r.byte(); f != recordFormat {
		return "", nil, fmt.Errorf("log record has format %d, this agent reads format %d", f, recordFormat)
	}
	ns = string(r.bytes())
	expiresAt := r.u64()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(rec)) {
		r.err = errors.New("op count exceeds the record")
	}
	if r.err != nil {
		return "", nil, fmt.Errorf("malformed log record: %w", r.err)
	}
	ops = make([]recordOp, 0, n)
	for range n {
		var op recordOp
		flags := r.byte()
		op.key = r.bytes()
		if flags&opDelete != 0 {
			op.deleteOp = true
		} else {
			op.c.lastEvent = int64(r.u64())
			op.c.expiresAt = expiresAt
			op.c.val = r.bytes()
			op.c.present = true
		}
		if r.err != nil {
			return "", nil, fmt.Errorf("malformed log record: %w", r.err)
		}
		ops = append(ops, op)
	}
	if len(r.b) != 0 {
		return "", nil, fmt.Errorf("malformed log record: %d trailing bytes", len(r.b))
	}
	return ns, ops, nil
}

// recReader reads a record, remembering the first error.
type recReader struct {
	b   []byte
	err error
}

var errShort = errors.New("record is truncated")

func (r *recReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = cmpErr(r.err, errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *recReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = cmpErr(r.err, errShort)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *recReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = cmpErr(r.err, errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// Validate reports whether the namespace's name and TTL are acceptable, so
// components configuring one can fail at config time.
func (ns Namespace) Validate() error {
	if strings.Contains(ns.Name, ".") {
		return fmt.Errorf("namespace name %q: use lowercase letters, digits, _ and - only", ns.Name)
	}
	return ns.validate()
}
