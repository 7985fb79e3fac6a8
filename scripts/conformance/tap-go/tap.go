// Package tap is a minimal Test Anything Protocol (version 13) producer.
//
// It is written for atoll's conformance harness and implements only the
// surface used by the OCI runtime-tools validation programs: it stands in
// for the import path "github.com/mndrix/tap-go", which Debian does not
// package. Written from scratch; it shares no code with that project.
package tap

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// counter is the state shared by a T and the views returned by Todo.
type counter struct {
	mu sync.Mutex
	n  int
}

// T emits one TAP stream.
type T struct {
	// Writer receives the TAP output; os.Stdout by default.
	Writer io.Writer

	c    *counter
	todo bool
}

// New returns a T writing to standard output.
func New() *T {
	return &T{Writer: os.Stdout, c: &counter{}}
}

func (t *T) out() io.Writer {
	if t.Writer == nil {
		return os.Stdout
	}
	return t.Writer
}

func (t *T) emit(s string) {
	fmt.Fprint(t.out(), s)
}

// Header writes the version line and, when testCount > 0, the plan.
// With testCount == 0 the plan is left for AutoPlan to write at the end.
func (t *T) Header(testCount int) {
	t.emit("TAP version 13\n")
	if testCount > 0 {
		t.emit(fmt.Sprintf("1..%d\n", testCount))
	}
}

// Count reports how many test points have been written so far.
func (t *T) Count() int {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.n
}

// AutoPlan writes a trailing plan covering every test point written.
func (t *T) AutoPlan() {
	t.emit(fmt.Sprintf("1..%d\n", t.Count()))
}

// clean keeps a description on one line and away from the '#' directive marker.
func clean(description string) string {
	d := strings.ReplaceAll(description, "\n", " ")
	return strings.ReplaceAll(d, "#", "\\#")
}

func (t *T) point(ok bool, description, directive string) {
	t.c.mu.Lock()
	t.c.n++
	n := t.c.n
	t.c.mu.Unlock()

	var b strings.Builder
	if !ok {
		b.WriteString("not ")
	}
	fmt.Fprintf(&b, "ok %d", n)
	if d := clean(description); d != "" {
		b.WriteString(" - ")
		b.WriteString(d)
	}
	if directive != "" {
		b.WriteString(" # ")
		b.WriteString(directive)
	} else if t.todo {
		b.WriteString(" # TODO")
	}
	b.WriteString("\n")
	t.emit(b.String())
}

// Ok writes a passing or failing test point.
func (t *T) Ok(test bool, description string) {
	t.point(test, description, "")
}

// Pass writes a passing test point.
func (t *T) Pass(description string) {
	t.point(true, description, "")
}

// Fail writes a failing test point.
func (t *T) Fail(description string) {
	t.point(false, description, "")
}

// Skip writes count skipped test points sharing one reason.
func (t *T) Skip(count int, description string) {
	for i := 0; i < count; i++ {
		t.point(true, "", "SKIP "+clean(description))
	}
}

// Todo returns a view of t whose test points carry the TODO directive;
// it shares t's numbering and output.
func (t *T) Todo() *T {
	return &T{Writer: t.Writer, c: t.c, todo: true}
}

// Diagnostic writes message as comment lines.
func (t *T) Diagnostic(message string) {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(message, "\n"), "\n") {
		if line == "" {
			b.WriteString("#\n")
			continue
		}
		b.WriteString("# ")
		b.WriteString(line)
		b.WriteString("\n")
	}
	t.emit(b.String())
}

// Diagnosticf formats its arguments like fmt.Sprintf and writes a Diagnostic.
func (t *T) Diagnosticf(format string, a ...interface{}) {
	t.Diagnostic(fmt.Sprintf(format, a...))
}

// YAML writes message as an indented YAML block attached to the last point.
func (t *T) YAML(message interface{}) error {
	body, err := yaml.Marshal(message)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("  ---\n")
	for _, line := range strings.Split(strings.TrimRight(string(body), "\n"), "\n") {
		b.WriteString("  ")
		b.WriteString(line)
		b.WriteString("\n")
	}
	b.WriteString("  ...\n")
	t.emit(b.String())
	return nil
}
