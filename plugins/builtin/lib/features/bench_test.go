package features

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkUpdate measures one event, natively, for 1000 users of the
// seed's event mix. "update" keeps states decoded, as within a batch with
// many events per user; "decode+update+encode" also loads and stores the
// user's state around every event, the cost when each batch has one event
// per user.
func BenchmarkUpdate(b *testing.B) {
	for _, cfg := range []struct{ name, config string }{
		{"default", `{}`},
		{"windows", `{"windows": [
			{"name": "purchase_amount_1h", "agg": "sum", "field": "event_data.amount", "window": "1h", "event_types": ["purchase"]},
			{"name": "events_24h", "agg": "count", "window": "24h"},
			{"name": "distinct_pages_7d", "agg": "distinct", "field": "event_data.page", "window": "168h", "bucket": "1h"}]}`},
	} {
		c := mustParse(b, cfg.config)
		const users = 1000
		events := benchEvents(c, 1<<14, users)
		b.Run(cfg.name+"/update", func(b *testing.B) {
			states := make([]State, users)
			v := c.NewVector()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e := &events[i%len(events)]
				if err := c.Update(&states[e.user], &e.ev, v); err != nil {
					b.Fatal(err)
				}
				i++
				if i%len(events) == 0 {
					shift(events)
				}
			}
		})
		b.Run(cfg.name+"/decode+update+encode", func(b *testing.B) {
			stored := make([][]byte, users)
			var s State
			v := c.NewVector()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e := &events[i%len(events)]
				if err := c.Decode(&s, stored[e.user]); err != nil {
					b.Fatal(err)
				}
				if err := c.Update(&s, &e.ev, v); err != nil {
					b.Fatal(err)
				}
				stored[e.user] = c.Encode(stored[e.user][:0], &s)
				i++
				if i%len(events) == 0 {
					shift(events)
				}
			}
		})
	}
}

type benchEvent struct {
	user int
	ev   Event
}

// benchEvents is the gen_events.py mix: types weighted 50/25/10/5/10,
// purchases with an amount, the rest with a page, every few minutes.
func benchEvents(c *Config, n, users int) []benchEvent {
	rng := rand.New(rand.NewPCG(42, 0))
	types := []string{"page_view", "click", "add_to_cart", "purchase", "search"}
	weights := []int{50, 25, 10, 5, 10}
	page := -1
	for i, f := range c.Inputs() {
		if f.Path == "event_data.page" {
			page = i
		}
	}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	out := make([]benchEvent, n)
	for i := range out {
		at += int64(rng.ExpFloat64() * float64(2*time.Second))
		r := rng.IntN(100)
		k := 0
		for ; r >= weights[k]; k++ {
			r -= weights[k]
		}
		ev := c.NewEvent()
		ev.Values[InputTime] = Value{Int: at, Ok: true}
		ev.Values[InputType] = Value{Str: []byte(types[k]), Ok: true}
		if types[k] == "purchase" {
			ev.Values[c.amount] = Value{Num: 5 + rng.Float64()*495, Ok: true}
		} else if page >= 0 {
			ev.Values[page] = Value{Str: []byte("/products/" + string(rune('0'+rng.IntN(10)))), Ok: true}
		}
		out[i] = benchEvent{user: rng.IntN(users), ev: *ev}
	}
	return out
}

// shift moves the events on in time past the last one, so a benchmark
// that loops over them keeps feeding on-time events.
func shift(events []benchEvent) {
	d := events[len(events)-1].ev.Values[InputTime].Int - events[0].ev.Values[InputTime].Int + int64(time.Second)
	for i := range events {
		events[i].ev.Values[InputTime].Int += d
	}
}
