package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The first byte of every Badger key says what the key is. See FORMAT.md.
const (
	kindMeta   = 'm'
	kindState  = 's'
	kindOffset = 'o'

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
)

// metaFormatKey holds the store's FormatVersion.
var metaFormatKey = []byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n'}

// validateNamespace checks a namespace name against [a-z0-9_-]{1,64}.
func validateNamespace(name string) error {
	if name == "" {
		return errors.New("namespace name is empty")
	}
	if len(name) > maxNamespace {
		return fmt.Errorf("namespace name %q is %d bytes, at most %d are allowed", name, len(name), maxNamespace)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return fmt.Errorf("namespace name %q: use lowercase letters, digits, _ and - only", name)
		}
	}
	return nil
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
// slice. The plugin bytes stay addressable as the returned slice's tail,
// which is what the cache keeps (no second copy).
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
