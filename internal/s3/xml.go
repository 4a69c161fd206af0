package s3

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// S3's replies are small XML documents of elements and text, without
// attributes that matter, mixed content or entities beyond the five
// predefined ones and character references. This reader and writer cover
// exactly that; encoding/xml would cost the binary about 150 KB, most of a
// tenth of what dropping minio-go saved.

// node is one element: its local name (any namespace prefix dropped),
// its text, and its child elements in order.
type node struct {
	name string
	text strings.Builder
	kids []*node
}

// child is the first child element called name, or an empty node.
func (n *node) child(name string) *node {
	for _, k := range n.kids {
		if k.name == name {
			return k
		}
	}
	return &node{}
}

// all is every child element called name.
func (n *node) all(name string) []*node {
	var out []*node
	for _, k := range n.kids {
		if k.name == name {
			out = append(out, k)
		}
	}
	return out
}

// get is the text of the first child element called name.
func (n *node) get(name string) string { return n.child(name).text.String() }

// parseXML reads a document into its root element.
func parseXML(doc []byte) (*node, error) {
	s := string(doc)
	var root *node
	var stack []*node
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			lt = len(s)
		}
		if text := s[:lt]; text != "" {
			if len(stack) > 0 {
				t, err := unescape(text)
				if err != nil {
					return nil, err
				}
				stack[len(stack)-1].text.WriteString(t)
			} else if strings.TrimSpace(text) != "" {
				return nil, errors.New("xml: text outside the root element")
			}
		}
		s = s[lt:]
		if s == "" {
			break
		}
		var skip string // the end of what starts here, when it is skipped
		switch {
		case strings.HasPrefix(s, "<?"):
			skip = "?>"
		case strings.HasPrefix(s, "<!--"):
			skip = "-->"
		case strings.HasPrefix(s, "<![CDATA["):
			end := strings.Index(s, "]]>")
			if end < 0 || len(stack) == 0 {
				return nil, errors.New("xml: a CDATA section out of place")
			}
			stack[len(stack)-1].text.WriteString(s[len("<![CDATA["):end])
			s = s[end+3:]
			continue
		case strings.HasPrefix(s, "<!"):
			skip = ">"
		}
		if skip != "" {
			end := strings.Index(s, skip)
			if end < 0 {
				return nil, errors.New("xml: unterminated declaration")
			}
			s = s[end+len(skip):]
			continue
		}
		gt := tagEnd(s)
		if gt < 0 {
			return nil, errors.New("xml: unterminated tag")
		}
		tag := s[1:gt]
		s = s[gt+1:]
		if name, ok := strings.CutPrefix(tag, "/"); ok {
			name = localName(strings.TrimSpace(name))
			if len(stack) == 0 || stack[len(stack)-1].name != name {
				return nil, fmt.Errorf("xml: unexpected </%s>", name)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		selfClosing := strings.HasSuffix(tag, "/")
		tag = strings.TrimSuffix(tag, "/")
		name := tag
		if i := strings.IndexAny(tag, " \t\r\n"); i >= 0 {
			name = tag[:i]
		}
		n := &node{name: localName(name)}
		if n.name == "" {
			return nil, errors.New("xml: a tag without a name")
		}
		switch {
		case len(stack) > 0:
			parent := stack[len(stack)-1]
			parent.kids = append(parent.kids, n)
		case root == nil:
			root = n
		default:
			return nil, errors.New("xml: a second root element")
		}
		if !selfClosing {
			stack = append(stack, n)
		}
	}
	if root == nil || len(stack) > 0 {
		return nil, errors.New("xml: the document is incomplete")
	}
	return root, nil
}

// tagEnd is the index of the '>' that ends the tag s starts with, past
// any quoted attribute value.
func tagEnd(s string) int {
	var quote byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i
		}
	}
	return -1
}

func localName(name string) string {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

var entities = map[string]string{"lt": "<", "gt": ">", "amp": "&", "quot": `"`, "apos": "'"}

// unescape replaces the predefined entities and character references.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "&") {
		return s, nil
	}
	var b strings.Builder
	for {
		amp := strings.IndexByte(s, '&')
		if amp < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:amp])
		s = s[amp+1:]
		semi := strings.IndexByte(s, ';')
		if semi < 0 {
			return "", errors.New("xml: unterminated entity")
		}
		ref := s[:semi]
		s = s[semi+1:]
		if r, ok := entities[ref]; ok {
			b.WriteString(r)
			continue
		}
		num, ok := strings.CutPrefix(ref, "#")
		if !ok {
			return "", fmt.Errorf("xml: unknown entity &%s;", ref)
		}
		base := 10
		if hex, ok := strings.CutPrefix(num, "x"); ok {
			num, base = hex, 16
		}
		code, err := strconv.ParseUint(num, base, 32)
		if err != nil || code > 0x10FFFF {
			return "", fmt.Errorf("xml: bad character reference &%s;", ref)
		}
		b.WriteRune(rune(code))
	}
}

// escapeText makes s safe as an element's text. Line ends and tabs are
// written as references, so that a key holding them arrives unchanged.
func escapeText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		case '\r':
			b.WriteString("&#xD;")
		case '\n':
			b.WriteString("&#xA;")
		case '\t':
			b.WriteString("&#x9;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
