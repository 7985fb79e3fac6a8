package tap

import (
	"bytes"
	"testing"
)

func TestStream(t *testing.T) {
	var buf bytes.Buffer
	h := New()
	h.Writer = &buf
	h.Header(0)
	h.Ok(true, "first")
	h.Fail("second # hash")
	h.Skip(2, "why")
	h.Todo().Fail("later")
	h.Pass("")
	h.Diagnosticf("n=%d\nnext", 6)
	if err := h.YAML(map[string]string{"stdout": "ok 1\nnot ok 2\n"}); err != nil {
		t.Fatal(err)
	}
	h.AutoPlan()
	want := "TAP version 13\n" +
		"ok 1 - first\n" +
		"not ok 2 - second \\# hash\n" +
		"ok 3 # SKIP why\n" +
		"ok 4 # SKIP why\n" +
		"not ok 5 - later # TODO\n" +
		"ok 6\n" +
		"# n=6\n# next\n" +
		"  ---\n  stdout: |\n      ok 1\n      not ok 2\n  ...\n" +
		"1..6\n"
	if got := buf.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if h.Count() != 6 {
		t.Fatalf("count %d", h.Count())
	}
}

func TestHeaderPlan(t *testing.T) {
	var buf bytes.Buffer
	h := New()
	h.Writer = &buf
	h.Header(3)
	if buf.String() != "TAP version 13\n1..3\n" {
		t.Fatalf("got %q", buf.String())
	}
}
