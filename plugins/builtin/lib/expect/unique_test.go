package expect

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

const compound = `
horizon: {count: 3, duration: 24h, time_column: ts}
expectations:
  - expect_compound_columns_to_be_unique: {column_list: [user_id, ts]}
`

func ev(user int, ts string) string {
	return fmt.Sprintf(`{"user_id":%d,"ts":%q}`, user, ts)
}

func TestUniqueAcrossBatches(t *testing.T) {
	st := newStream(t, mustParse(t, compound))
	for _, step := range []struct {
		rec  string
		dup  bool
		next bool // start a new batch first
	}{
		{rec: ev(1, "2025-01-01T00:00:00Z")},
		{rec: ev(2, "2025-01-01T00:00:00Z")},
		{rec: ev(1, "2025-01-01T01:00:00Z")},
		{rec: ev(1, "2025-01-01T00:00:00Z"), dup: true}, // same batch
		{rec: ev(1, "2025-01-01T01:00:00Z"), dup: true, next: true},
		{rec: ev(2, "2025-01-01T00:00:00Z"), dup: true},
		{rec: ev(3, "2025-01-01T00:00:00Z")},
	} {
		if step.next {
			st.v.Begin()
		}
		out, _ := st.check(step.rec, false)
		if (out.Violations == 1) != step.dup {
			t.Errorf("%s: violations %d, want duplicate %v", step.rec, out.Violations, step.dup)
		}
	}
}

func TestUniqueHorizonCount(t *testing.T) {
	st := newStream(t, mustParse(t, compound))
	for _, ts := range []string{"01", "02", "03", "04"} { // 4 values, count 3
		st.check(ev(1, "2025-01-01T00:00:"+ts+"Z"), false)
	}
	if out, _ := st.check(ev(1, "2025-01-01T00:00:01Z"), false); out.Violations != 0 {
		t.Errorf("the oldest of 4 values must be forgotten with count 3: %s", st.v.AppendReason(nil))
	}
	if out, _ := st.check(ev(1, "2025-01-01T00:00:03Z"), false); out.Violations != 1 {
		t.Error("a value within the last 3 must be remembered")
	}
}

func TestUniqueHorizonDuration(t *testing.T) {
	st := newStream(t, mustParse(t, `
horizon: {duration: 24h, time_column: ts}
expectations:
  - expect_compound_columns_to_be_unique: {column_list: [user_id, code]}
`))
	rec := func(code, ts string) string {
		return fmt.Sprintf(`{"user_id":1,"code":%q,"ts":%q}`, code, ts)
	}
	st.check(rec("A", "2025-01-01T00:00:00Z"), false)
	if out, _ := st.check(rec("A", "2025-01-01T23:59:59Z"), false); out.Violations != 1 {
		t.Error("within 24h of event time: a duplicate")
	}
	if out, _ := st.check(rec("A", "2025-01-02T00:00:01Z"), false); out.Violations != 0 {
		t.Errorf("24h and 1s later in event time the first A is forgotten: %s", st.v.AppendReason(nil))
	}
	if out, _ := st.check(rec("A", "2025-01-02T10:00:00Z"), false); out.Violations != 1 {
		t.Error("the A just remembered is a duplicate again")
	}
	// No readable event time: checked against what is remembered, but not
	// remembered itself.
	if out, _ := st.check(`{"user_id":1,"code":"B"}`, false); out.Violations != 0 || out.SetState {
		t.Errorf("record without ts: %+v", out)
	}
}

func TestUniqueRedeliveryNotFlagged(t *testing.T) {
	st := newStream(t, mustParse(t, compound))
	st.check(ev(1, "2025-01-01T00:00:00Z"), false)
	out, _ := st.check(ev(1, "2025-01-01T00:00:00Z"), true)
	if out.Violations != 0 || out.Action != Keep || out.SetState {
		t.Errorf("a redelivered record finding its own tuple: %+v %s", out, st.v.AppendReason(nil))
	}
	if out, _ := st.check(ev(1, "2025-01-01T00:00:00Z"), false); out.Violations != 1 {
		t.Error("a new delivery of the same tuple is still a duplicate")
	}
}

func TestUniqueRejectedRecordsNotRemembered(t *testing.T) {
	st := newStream(t, mustParse(t, compound+`
  - expect_column_values_to_be_between: {column: score, max_value: 1}
`))
	if out, _ := st.check(`{"user_id":1,"ts":"2025-01-01T00:00:00Z","score":5}`, false); out.Action != Fail || out.SetState {
		t.Fatalf("bad record: %+v", out)
	}
	if out, _ := st.check(`{"user_id":1,"ts":"2025-01-01T00:00:00Z","score":0}`, false); out.Violations != 0 {
		t.Errorf("the corrected resend of a rejected record is not a duplicate: %s", st.v.AppendReason(nil))
	}
}

func TestUniqueKeyRule(t *testing.T) {
	s := mustParse(t, "on_failure: flag\n"+compound)
	v := s.NewValidator()
	v.Begin()
	r := rowFor(t, s, ev(1, "2025-01-01T00:00:00Z"))
	r.Key = []byte("someone-else")
	out := v.Check(r)
	if out.Action != Fail || out.Valid || out.SetState {
		t.Errorf("a wrongly keyed step must fail the record even with on_failure flag: %+v", out)
	}
	reason := string(v.AppendReason(nil))
	for _, want := range []string{`"someone-else"`, "user_id or ts", "key: user_id"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not contain %q", reason, want)
		}
	}
	if e := violations(t, v)[0]["error"]; e == nil {
		t.Error("violations do not explain the key rule")
	}
	// Keyed by the other column is fine too, and numbers match as the
	// agent writes them.
	for _, key := range []string{"2025-01-01T00:00:00Z", "1"} {
		r.Key = []byte(key)
		if out := v.Check(r); out.Violations != 0 {
			t.Errorf("key %q: %s", key, v.AppendReason(nil))
		}
	}
	s2 := mustParse(t, "horizon: {count: 5}\nexpectations: [{expect_column_values_to_be_unique: {column: v}}]")
	v2 := s2.NewValidator()
	for _, tc := range []struct{ rec, key string }{{`{"v":1.50}`, "1.5"}, {`{"v":1e3}`, "1000"}, {`{"v":true}`, "true"}} {
		r := rowFor(t, s2, tc.rec)
		r.Key = []byte(tc.key)
		if out := v2.Check(r); out.Violations != 0 {
			t.Errorf("%s keyed %q: %s", tc.rec, tc.key, v2.AppendReason(nil))
		}
	}
}

func TestUniqueStateFormat(t *testing.T) {
	st := newStream(t, mustParse(t, compound))
	out, _ := st.check(ev(1, "2025-01-01T00:00:00Z"), false)
	if !out.SetState {
		t.Fatal("no state stored")
	}
	s := out.State
	// version, uid, n=1, flags, hash, time
	if len(s) != 1+4+1+1+8+8 || s[0] != stateVersion || s[5] != 1 || s[6] != flagTimes {
		t.Fatalf("state % x", s)
	}
	if at := int64(binary.LittleEndian.Uint64(s[15:])); at != 1735689600*1e9 {
		t.Errorf("stored event time %d", at)
	}
	// A state of another version or garbage reads as empty, not as an error.
	for _, bad := range [][]byte{{2, 1, 2, 3}, {stateVersion, 1, 2}, {stateVersion, 0, 0, 0, 0, 0xff}} {
		st.states["1"] = bad
		if out, _ := st.check(ev(1, "2025-01-01T00:00:00Z"), false); out.Violations != 0 || !out.SetState {
			t.Errorf("state % x: %+v", bad, out)
		}
	}
}

// TestUniqueSectionsKeptApart: two uniqueness expectations on one key keep
// separate memories, and editing the rest of the suite keeps them.
func TestUniqueSectionsKeptApart(t *testing.T) {
	y := `
horizon: {count: 10}
expectations:
  - expect_compound_columns_to_be_unique: {column_list: [u, a]}
  - expect_compound_columns_to_be_unique: {column_list: [u, b]}
`
	st := newStream(t, mustParse(t, y))
	st.check(`{"u":1,"a":"x","b":"y"}`, false)
	out, _ := st.check(`{"u":1,"a":"x","b":"z"}`, false)
	if out.Violations != 1 || !strings.Contains(string(st.v.AppendReason(nil)), "(u,a)") {
		t.Errorf("want only (u,a) broken: %s", st.v.AppendReason(nil))
	}
	edited := newStream(t, mustParse(t, y+"  - expect_column_values_to_not_be_null: {column: u}\n"))
	edited.states = st.states
	if out, _ := edited.check(`{"u":1,"a":"q","b":"y"}`, false); out.Violations != 1 {
		t.Errorf("after editing the suite, (u,b) must still remember y: %s", edited.v.AppendReason(nil))
	}
}

// TestBatchEqualsRowByRow: evaluating a batch at once, then finishing its
// rows in order, decides and reports exactly as checking row by row.
func TestBatchEqualsRowByRow(t *testing.T) {
	s := shippedSuite(t, "user_data.yaml")
	records := []string{
		userDataRec(1, "10", "2025-01-01T00:00:00"), userDataRec(2, "5000", "2025-01-01T00:00:00"),
		userDataRec(1, "10", "2025-01-01T00:00:00"), `{"user_id":1,"page_views":"x","timestamp":"2025-01-01T02:00:00"}`,
		userDataRec(3, "-1", "Jan 1"), userDataRec(1, "20", "2025-01-01T01:00:00"), `[]`,
	}
	var want []string
	one := newStream(t, s)
	for _, rec := range records {
		out, _ := one.check(rec, false)
		want = append(want, fmt.Sprintf("%+v %s %s", out, one.v.AppendReason(nil), one.v.AppendViolations(nil)))
	}
	wantReport := string(one.v.Report().AppendJSON(nil))

	v := s.NewValidator()
	v.Begin()
	rows := make([]Row, len(records))
	for i, rec := range records {
		rows[i] = *rowFor(t, s, rec)
	}
	v.Evaluate(rows)
	states := map[string][]byte{}
	for i := range rows {
		r := &rows[i]
		r.Key = keyOf(r, s.unique[0].cols[0])
		r.State = states[string(r.Key)]
		var out Outcome
		v.Finish(i, r, &out)
		if out.SetState {
			states[string(r.Key)] = append([]byte(nil), out.State...)
		}
		got := fmt.Sprintf("%+v %s %s", out, v.AppendReason(nil), v.AppendViolations(nil))
		if got != want[i] {
			t.Errorf("row %d:\n batch %s\n  rows %s", i, got, want[i])
		}
	}
	if got := string(v.Report().AppendJSON(nil)); got != wantReport {
		t.Errorf("report:\n batch %s\n  rows %s", got, wantReport)
	}
}

func userDataRec(user int, pv, ts string) string {
	return fmt.Sprintf(`{"user_id":%d,"page_views":%s,"session_duration":60,"timestamp":%q}`, user, pv, ts)
}
