package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestManPages: `gitopsd man` of a build with -tags man (what make package
// ships, gzipped) writes a
// page for every command a user can type, each with the command's Long
// description and its examples, and gitopsd-run(1) carries the
// configuration reference of internal/config/doc.go, which the packaged
// config points at.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "gitopsd-man")
	build := exec.Command("go", "build", "-tags", "man", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags man: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "man", "--config-doc", filepath.Join("..", "..", "internal", "config", "doc.go"), dir).CombinedOutput(); err != nil {
		t.Fatalf("gitopsd man: %v\n%s", err, out)
	}
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %q: %v", c.CommandPath(), err)
			return
		}
		page := string(b)
		// The page's text is roff: compare the first words, which md2man
		// leaves alone.
		if words := strings.Fields(longOrShort(c)); len(words) > 0 && !strings.Contains(page, words[0]) {
			t.Errorf("%s: the page lacks the command's description %q", name, longOrShort(c))
		}
		if c.Example != "" && !strings.Contains(page, ".SH EXAMPLE") {
			t.Errorf("%s: the command has examples, the page none", name)
		}
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(newRoot())

	run, err := os.ReadFile(filepath.Join(dir, "gitopsd-run.1"))
	if err != nil {
		t.Fatal(err)
	}
	// Every top-level key of the reference, and its headings.
	for _, want := range []string{".SH CONFIGURATION", "Every key", "source:", "host:", "state_dir:", "socket:", "metrics:",
		"webhook:", "drift:", "backup:", "images:", "GITOPSD_SOURCE_URL"} {
		if !strings.Contains(string(run), want) {
			t.Errorf("gitopsd-run.1 lacks %q of the configuration reference", want)
		}
	}
	if strings.Contains(string(run), "Package config") {
		t.Errorf("gitopsd-run.1 speaks to Go programmers (\"Package config ...\")")
	}
}

// TestDaemonBinaryLeavesOutTheManGenerator: the binary a host runs (no
// tags) has no man command, and links neither cobra's man page generator
// nor its Markdown parser: they are what make package alone needs.
func TestDaemonBinaryLeavesOutTheManGenerator(t *testing.T) {
	if _, _, code := gitopsd(t, nil, "man", t.TempDir()); code == 0 {
		t.Error("gitopsd man ran in the daemon's binary")
	}
	out, err := exec.Command("go", "version", "-m", binary).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	for _, mod := range []string{"github.com/cpuguy83/go-md2man", "github.com/russross/blackfriday"} {
		if strings.Contains(string(out), mod) {
			t.Errorf("the daemon's binary links %s:\n%s", mod, out)
		}
	}
}
