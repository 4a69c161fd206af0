package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// loadYAML reads every document of a YAML stream into a branch, turning
// comments into comment entries where sops puts them. Their place matters:
// comment rules decide what is encrypted by the comments above a value.
func loadYAML(data []byte) ([]mapping, error) {
	// A file without aliases has fewer nodes than bytes; the loader visits
	// some nodes twice. Aliases may expand the document, but only so far.
	l := &yamlLoader{budget: 2*len(data) + 1024}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var branches []mapping
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			return branches, nil
		}
		if err != nil {
			return nil, err
		}
		m, err := l.appendNode(mapping{}, &doc, false, 0)
		if err != nil {
			return nil, err
		}
		branches = append(branches, m)
	}
}

// yamlLoader converts yaml.Nodes to the tree. budget counts the nodes it
// may still visit: aliases let a small file name a huge tree, and they are
// expanded, as in sops, so work must be bounded by the file's size.
type yamlLoader struct {
	budget int
}

// visit charges one node against the budget and checks the depth, which
// also stops aliases that refer to themselves.
func (l *yamlLoader) visit(n *yaml.Node, depth int) error {
	l.budget--
	switch {
	case n == nil:
		return errors.New("empty node")
	case l.budget < 0:
		return errors.New("document too large once its aliases are expanded")
	case depth > maxDepth:
		return fmt.Errorf("line %d: nested deeper than %d", n.Line, maxDepth)
	}
	return nil
}

// appendNode appends the entries of a document or mapping node to m.
// handled says the caller already took the node's own comments.
func (l *yamlLoader) appendNode(m mapping, n *yaml.Node, handled bool, depth int) (mapping, error) {
	if err := l.visit(n, depth); err != nil {
		return nil, err
	}
	if !handled {
		m = appendComments(m, n.HeadComment, false)
		m = appendComments(m, n.LineComment, false)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			var err error
			if m, err = l.appendNode(m, c, false, depth+1); err != nil {
				return nil, err
			}
		}
	case yaml.MappingNode:
		var err error
		if m, err = l.appendPairs(m, n, depth); err != nil {
			return nil, err
		}
	case yaml.AliasNode:
		var err error
		if m, err = l.appendNode(m, n.Alias, false, depth+1); err != nil {
			return nil, err
		}
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			// An empty document. sops drops its trailing comments.
			return m, nil
		}
		return nil, fmt.Errorf("line %d: a document that is a single value is not supported", n.Line)
	case yaml.SequenceNode:
		return nil, fmt.Errorf("line %d: a document that is a list is not supported", n.Line)
	}
	if !handled {
		m = appendComments(m, n.FootComment, false)
	}
	return m, nil
}

// appendPairs appends the key/value pairs of a mapping node, with the
// comments around them.
func (l *yamlLoader) appendPairs(m mapping, n *yaml.Node, depth int) (mapping, error) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := l.visit(k, depth+1); err != nil {
			return nil, err
		}
		var key any
		_ = k.Decode(&key) // sops ignores the error; key then is nil, refused below
		name, ok := key.(string)
		if !ok {
			return nil, fmt.Errorf("line %d: key is not a string", k.Line)
		}
		if seen[name] {
			// sops has yaml.v3 refuse duplicate keys.
			return nil, fmt.Errorf("line %d: duplicate key %q", k.Line, name)
		}
		seen[name] = true
		m = appendComments(m, k.HeadComment, false)
		m = appendComments(m, k.LineComment, false)
		// A scalar's comments belong to the mapping; a nested mapping or
		// list takes its own.
		scalar := v.Kind == yaml.ScalarNode || v.Kind == yaml.AliasNode
		if scalar {
			m = appendComments(m, v.HeadComment, false)
			m = appendComments(m, v.LineComment, true)
		}
		value, err := l.value(v, scalar, depth+1)
		if err != nil {
			return nil, err
		}
		m = append(m, entry{key: name, value: value})
		if scalar {
			m = appendComments(m, v.FootComment, false)
		}
		m = appendComments(m, k.FootComment, false)
	}
	return m, nil
}

// value converts a node below the document's top level.
func (l *yamlLoader) value(n *yaml.Node, handled bool, depth int) (any, error) {
	if err := l.visit(n, depth); err != nil {
		return nil, err
	}
	switch n.Kind {
	case yaml.MappingNode:
		return l.appendNode(mapping{}, n, handled, depth)
	case yaml.SequenceNode:
		return l.sequence(n, handled, depth)
	case yaml.AliasNode:
		return l.value(n.Alias, false, depth+1)
	case yaml.ScalarNode:
		var v any
		_ = n.Decode(&v) // sops ignores the error; the value then is null
		switch v.(type) {
		case nil, string, int, float64, bool, time.Time:
			return v, nil
		}
		return nil, fmt.Errorf("line %d: unsupported value (%s)", n.Line, n.ShortTag())
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

// sequence converts a list node; its elements' comments become elements.
func (l *yamlLoader) sequence(n *yaml.Node, handled bool, depth int) (sequence, error) {
	var q sequence
	if !handled {
		q = appendListComments(q, n.HeadComment, false)
		q = appendListComments(q, n.LineComment, false)
	}
	for _, item := range n.Content {
		if item == nil {
			return nil, errors.New("empty node")
		}
		q = appendListComments(q, item.HeadComment, false)
		q = appendListComments(q, item.LineComment, true)
		v, err := l.value(item, true, depth+1)
		if err != nil {
			return nil, err
		}
		q = append(q, v)
		q = appendListComments(q, item.FootComment, false)
	}
	if !handled {
		q = appendListComments(q, n.FootComment, false)
	}
	return q, nil
}

// commentLines splits a yaml.v3 comment into its lines without the '#'.
func commentLines(text string, inline bool) []comment {
	var cs []comment
	for _, line := range strings.Split(text, "\n") {
		if line != "" {
			cs = append(cs, comment{text: line[1:], inline: inline})
		}
	}
	return cs
}

func appendComments(m mapping, text string, inline bool) mapping {
	for _, c := range commentLines(text, inline) {
		m = append(m, entry{key: c})
	}
	return m
}

func appendListComments(q sequence, text string, inline bool) sequence {
	for _, c := range commentLines(text, inline) {
		q = append(q, c)
	}
	return q
}

// emitYAML writes the branches as sops does: one document each, indented
// by four spaces, comments put back around the keys and elements.
func emitYAML(branches []mapping) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(4)
	for _, m := range branches {
		body, err := mappingNode(m)
		if err != nil {
			return nil, err
		}
		doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{body}}
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mappingNode builds the node of a mapping, its comments placed as
// commentedNode places them.
func mappingNode(m mapping) (*yaml.Node, error) {
	items := make([]any, len(m))
	for i, e := range m {
		if c, ok := e.key.(comment); ok {
			items[i] = c
		} else {
			items[i] = e
		}
	}
	return commentedNode(yaml.MappingNode, items, func(n *yaml.Node, item any, above, inline []string) (*yaml.Node, error) {
		e := item.(entry)
		k := &yaml.Node{}
		if err := k.Encode(e.key); err != nil {
			return nil, err
		}
		addHeadComment(k, above)
		v, err := valueNode(e.value)
		if err != nil {
			return nil, err
		}
		addTrailingComment(&v.LineComment, inline)
		n.Content = append(n.Content, k, v)
		return k, nil // comments after the last entry go below its key
	})
}

// sequenceNode builds the node of a list, its comments placed as
// commentedNode places them.
func sequenceNode(q sequence) (*yaml.Node, error) {
	return commentedNode(yaml.SequenceNode, q, func(n *yaml.Node, item any, above, inline []string) (*yaml.Node, error) {
		v, err := valueNode(item)
		if err != nil {
			return nil, err
		}
		addHeadComment(v, above)
		addTrailingComment(&v.LineComment, inline)
		n.Content = append(n.Content, v)
		return v, nil
	})
}

// commentedNode builds a mapping or list node of kind from its items, with
// the comments among them placed as sops writes them: those before the
// first item above the collection, later ones above the next item, inline
// ones after the next value, and those after the last item below it. add
// appends the nodes of one item, given the comments above and inline to
// it, and returns the node a comment after the last item goes below.
func commentedNode(kind yaml.Kind, items []any, add func(n *yaml.Node, item any, above, inline []string) (*yaml.Node, error)) (*yaml.Node, error) {
	n := &yaml.Node{Kind: kind}
	var above, inline []string
	var last *yaml.Node
	for _, item := range items {
		if c, ok := item.(comment); ok {
			if c.inline {
				inline = append(inline, c.text)
			} else {
				above = append(above, c.text)
			}
			continue
		}
		if last == nil {
			addHeadComment(n, above)
			above = nil
		}
		var err error
		if last, err = add(n, item, above, inline); err != nil {
			return nil, err
		}
		above, inline = nil, nil
	}
	rest := append(above, inline...)
	if last == nil {
		addHeadComment(n, rest)
	} else {
		addTrailingComment(&last.FootComment, rest)
	}
	return n, nil
}

// valueNode builds the node of any value.
func valueNode(v any) (*yaml.Node, error) {
	switch v := v.(type) {
	case mapping:
		return mappingNode(v)
	case sequence:
		return sequenceNode(v)
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, fmt.Errorf("a %s value cannot be written as YAML", typeName(v))
	}
	return n, nil
}

// addHeadComment puts lines above n, before any comment already there.
func addHeadComment(n *yaml.Node, lines []string) {
	if len(lines) == 0 {
		return
	}
	text := "#" + strings.Join(lines, "\n#")
	if n.HeadComment != "" {
		text += "\n" + n.HeadComment
	}
	n.HeadComment = text
}

// addTrailingComment appends lines to a line or foot comment.
func addTrailingComment(dst *string, lines []string) {
	if len(lines) == 0 {
		return
	}
	text := "#" + strings.Join(lines, "\n#")
	if *dst != "" {
		text = *dst + "\n" + text
	}
	*dst = text
}
