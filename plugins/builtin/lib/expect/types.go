package expect

import (
	"sort"
	"strconv"
	"strings"
	"unsafe"
)

// typeCheck is what a GX type name means for a JSON value.
type typeCheck struct {
	name     string // as written, for messages
	class    typeClass
	bits     int // for integers: 8..64
	unsigned bool
}

type typeClass uint8

const (
	tcInt      typeClass = iota // a number written as an integer (Python int), within bits
	tcFloat                     // any number (pandas stores ints in a float column as floats)
	tcString                    // a string
	tcBool                      // true or false
	tcDict                      // a JSON object (Python dict)
	tcList                      // a JSON array (Python list)
	tcObject                    // pandas' object dtype: string, object or array, not a number or bool
	tcDatetime                  // a string holding an ISO 8601 date-time
)

// typeNames maps the lower-cased type names GX users write (Python, numpy,
// pandas, SQL and Spark spellings) to what they accept in a JSON record.
var typeNames = map[string]typeCheck{}

func init() {
	add := func(c typeCheck, names ...string) {
		for _, n := range names {
			c.name = n
			typeNames[n] = c
		}
	}
	add(typeCheck{class: tcInt, bits: 64}, "int", "int64", "integer", "long", "bigint", "int64dtype", "longtype", "integertype", "int_")
	add(typeCheck{class: tcInt, bits: 32}, "int32", "int32dtype", "intc")
	add(typeCheck{class: tcInt, bits: 16}, "int16", "smallint", "shorttype", "int16dtype")
	add(typeCheck{class: tcInt, bits: 8}, "int8", "tinyint", "bytetype", "int8dtype")
	add(typeCheck{class: tcInt, bits: 64, unsigned: true}, "uint", "uint64", "uint64dtype")
	add(typeCheck{class: tcInt, bits: 32, unsigned: true}, "uint32", "uint32dtype")
	add(typeCheck{class: tcInt, bits: 16, unsigned: true}, "uint16", "uint16dtype")
	add(typeCheck{class: tcInt, bits: 8, unsigned: true}, "uint8", "uint8dtype")
	add(typeCheck{class: tcFloat}, "float", "float64", "float32", "float16", "double", "number", "numeric", "decimal", "real",
		"float64dtype", "float32dtype", "floattype", "doubletype", "decimaltype", "float_")
	add(typeCheck{class: tcString}, "str", "string", "unicode", "text", "varchar", "char", "stringtype", "string[python]", "string[pyarrow]", "stringdtype")
	add(typeCheck{class: tcBool}, "bool", "boolean", "bool_", "booleantype", "booleandtype")
	add(typeCheck{class: tcDict}, "dict", "mapping", "map", "maptype", "struct", "structtype")
	add(typeCheck{class: tcList}, "list", "array", "tuple", "arraytype")
	add(typeCheck{class: tcObject}, "object", "o")
	add(typeCheck{class: tcDatetime}, "datetime", "datetime64", "timestamp", "timestamptype", "date", "datetime.datetime", "datetimetz", "datetimetzdtype")
}

// lookupType resolves a type name; datetime64 takes any unit and zone
// suffix (datetime64[ns], datetime64[ns, UTC]).
func lookupType(name string) (typeCheck, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if strings.HasPrefix(n, "datetime64[") && strings.HasSuffix(n, "]") {
		n = "datetime64"
	}
	c, ok := typeNames[n]
	c.name = name
	return c, ok
}

func knownTypes() string {
	names := make([]string, 0, len(typeNames))
	for n := range typeNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (c typeCheck) accepts(v Value) bool {
	switch c.class {
	case tcInt:
		return v.Kind == KindNumber && isInteger(v.Text, c.bits, c.unsigned)
	case tcFloat:
		return v.Kind == KindNumber
	case tcString:
		return v.Kind == KindString
	case tcBool:
		return v.Kind == KindTrue || v.Kind == KindFalse
	case tcDict:
		return v.Kind == KindObject
	case tcList:
		return v.Kind == KindArray
	case tcObject:
		return v.Kind == KindString || v.Kind == KindObject || v.Kind == KindArray
	case tcDatetime:
		if v.Kind != KindString {
			return false
		}
		_, ok := parseISO(v.Text)
		return ok
	}
	return false
}

// isInteger reports whether a JSON number is written as an integer that
// fits: Python's json gives an int only for text without a fraction or
// exponent, so 3.0 and 1e3 are floats, as they would be in pandas.
func isInteger(text []byte, bits int, unsigned bool) bool {
	v, ok := parseInt(text)
	switch {
	case !ok && unsigned && bits == 64 && intLiteral(text) && text[0] != '-':
		// Above int64 but perhaps within uint64.
		_, err := strconv.ParseUint(unsafe.String(unsafe.SliceData(text), len(text)), 10, 64)
		return err == nil
	case !ok:
		return false
	case unsigned:
		return v >= 0 && (bits == 64 || v < 1<<bits)
	case bits == 64:
		return true
	}
	return v >= -(1<<(bits-1)) && v < 1<<(bits-1)
}

// intLiteral reports whether a JSON number's text has no fraction or
// exponent.
func intLiteral(text []byte) bool {
	i := 0
	if i < len(text) && text[i] == '-' {
		i++
	}
	if i == len(text) {
		return false
	}
	for ; i < len(text); i++ {
		if text[i] < '0' || text[i] > '9' {
			return false
		}
	}
	return true
}
