package notify

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsListTheSchemes: docs/configuration.md's notify section names
// every scheme gitopsd takes, and no other (but logger://, named as
// not taken).
func TestDocsListTheSchemes(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## `notify`")
	if start < 0 {
		t.Fatal("no notify section")
	}
	doc = doc[start:]
	if end := strings.Index(doc[1:], "\n## "); end > 0 {
		doc = doc[:end+1]
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z]+)(\\+https?)?://").FindAllStringSubmatch(doc, -1) {
		named[m[1]] = true
	}
	for _, s := range Schemes() {
		if !named[s] {
			t.Errorf("docs/configuration.md does not name %s://", s)
		}
		delete(named, s)
	}
	delete(named, "logger")
	delete(named, "https") // the webhook example
	for s := range named {
		t.Errorf("docs/configuration.md names %s://, which gitopsd does not take", s)
	}
}
