// Package eventgen makes user events in the seed tutorial's Kafka shape,
// {user_id, event_type, event_data, timestamp}, the way
// shared/peers/gen_events.py does, with Go's generator in place of
// Python's: deterministic for a seed, in timestamp order over 14 days with
// exponential gaps (so users have sessions), types weighted 50/25/10/5/10.
// Tests use it for parity checks and benchmarks for their input.
package eventgen

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Types are the seed's event types, in gen_events.py's order.
var Types = [...]string{"page_view", "click", "add_to_cart", "purchase", "search"}

var weights = [...]int{50, 25, 10, 5, 10}

// Event is one generated event.
type Event struct {
	User   int
	Type   string
	Page   string  // set unless a purchase
	Amount float64 // purchases: 5..500, two decimals
	Prod   int64   // purchases: 1..500
	Time   time.Time
}

// Start is when the generated events begin.
var Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Generate returns n events of users users (ids 1..users).
func Generate(n, users int, seed uint64) []Event {
	rng := rand.New(rand.NewPCG(seed, 0))
	t := Start
	step := float64(14*24*time.Hour) / float64(max(n, 1))
	out := make([]Event, n)
	for i := range out {
		t = t.Add(time.Duration(rng.ExpFloat64() * step))
		r, k := rng.IntN(100), 0
		for ; r >= weights[k]; k++ {
			r -= weights[k]
		}
		e := Event{Type: Types[k]}
		if e.Type == "purchase" {
			e.Amount = math.Round((5+rng.Float64()*495)*100) / 100
			e.Prod = int64(1 + rng.IntN(500))
		} else {
			e.Page = fmt.Sprintf("/products/%d", 1+rng.IntN(500))
		}
		e.User = 1 + rng.IntN(users)
		e.Time = t.Truncate(time.Millisecond)
		out[i] = e
	}
	return out
}

// AppendJSON appends the event as one line of compact JSON, as
// gen_events.py writes it.
func (e Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"user_id":`...)
	dst = strconv.AppendInt(dst, int64(e.User), 10)
	dst = append(dst, `,"event_type":`...)
	dst = strconv.AppendQuote(dst, e.Type)
	if e.Type == "purchase" {
		dst = append(dst, `,"event_data":{"amount":`...)
		dst = strconv.AppendFloat(dst, e.Amount, 'f', -1, 64)
		dst = append(dst, `,"product_id":`...)
		dst = strconv.AppendInt(dst, e.Prod, 10)
		dst = append(dst, '}')
	} else {
		dst = append(dst, `,"event_data":{"page":`...)
		dst = strconv.AppendQuote(dst, e.Page)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"timestamp":"`...)
	dst = e.Time.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	return append(dst, `"}`...)
}

// WriteJSONL writes events as JSON lines.
func WriteJSONL(w io.Writer, events []Event) error {
	var buf []byte
	for _, e := range events {
		buf = append(e.AppendJSON(buf[:0]), '\n')
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
	}
	return nil
}
