package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/stack"
)

// ForStack is the rollout of st: its x-gitopsd.rollout, with the schema of
// fleet.yaml's rollout and replacing it whole, else base (nil: none).
func ForStack(st *stack.Stack, base *Rollout) (*Rollout, error) {
	raw, ok := st.Options.Raw["rollout"]
	if !ok {
		return base, nil
	}
	file := filepath.Join("stacks", st.Name, "compose.yaml")
	if len(st.Files) > 0 {
		file = filepath.Join("stacks", st.Name, filepath.Base(st.Files[0]))
	}
	// The stack loader hands x-gitopsd over decoded and interpolated, so
	// the nodes carry no lines: find them in the files as written.
	var n yaml.Node
	if err := n.Encode(raw); err != nil {
		return nil, &Error{File: file, Key: "x-gitopsd.rollout", Msg: err.Error()}
	}
	clearLines(&n)
	p := parser{file: file, lineOf: func(key string) int {
		for i := len(st.Files) - 1; i >= 0; i-- {
			if line := lineIn(st.Files[i], key); line > 0 {
				file = filepath.Join("stacks", st.Name, filepath.Base(st.Files[i]))
				return line
			}
		}
		return 0
	}}
	r, err := p.rollout(&n, "x-gitopsd.rollout")
	if e, ok := err.(*Error); ok {
		e.File = file
	}
	return r, err
}

func clearLines(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		clearLines(c)
	}
}

// lineIn is the line of the dotted key path in a YAML file (0: not there).
// A key the path does not reach gives the line of the deepest node found,
// which is where the user must look.
func lineIn(file, key string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n, line := doc.Content[0], 0
	for i, seg := range strings.Split(key, ".") {
		next := child(n, seg)
		if next == nil {
			if i < 2 { // not even x-gitopsd.rollout: another file's
				return 0
			}
			return line
		}
		n, line = next.val, next.line
	}
	return line
}

type found struct {
	val  *yaml.Node
	line int
}

func child(n *yaml.Node, seg string) *found {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return &found{n.Content[i+1], n.Content[i].Line}
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return &found{n.Content[i], n.Content[i].Line}
		}
	}
	return nil
}

// String sums a rollout up for logs and validate.
func (r *Rollout) String() string {
	if r == nil {
		return "no rollout"
	}
	names := make([]string, 0, len(r.Waves))
	for _, w := range r.Waves {
		names = append(names, w.Name)
	}
	s := fmt.Sprintf("waves %s, soak %s", strings.Join(names, ", "), r.Soak)
	if r.Gate != nil {
		s += fmt.Sprintf(", gate %s (%v%% healthy, on_error %s)", r.Gate.PrometheusURL, r.Gate.Healthy*100, r.Gate.OnError)
	}
	return s
}
