package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sentFiles(t *testing.T, spec BuildSpec) []string {
	t.Helper()
	files, err := contextFiles(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if !f.info.IsDir() {
			out = append(out, f.rel)
		}
	}
	return out
}

// The builder gets what `docker build` sends: .dockerignore applied,
// exclusions honoured, the Dockerfile and .dockerignore always sent.
func TestBuildContextFollowsDockerignore(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"Dockerfile":         "FROM scratch\n",
		".dockerignore":      "# comment\n*.md\n**/*.tmp\nlogs/\n!KEEP.md\nDockerfile\n.dockerignore\n",
		"main.go":            "package main\n",
		"README.md":          "docs\n",
		"KEEP.md":            "kept\n",
		"logs/today.log":     "noise\n",
		"site/index.html":    "<p>hi</p>\n",
		"site/deep/notes.md": "sent: *.md is anchored at the context's root\n",
		"site/deep/x.tmp":    "ignored by **\n",
	})
	got := sentFiles(t, BuildSpec{ContextDir: dir})
	want := []string{".dockerignore", "Dockerfile", "KEEP.md", "main.go", "site/deep/notes.md", "site/index.html"}
	if !slices.Equal(got, want) {
		t.Fatalf("context sent %v, want %v", got, want)
	}
}

// Equal inputs give equal digests; a change to a sent file, to the build
// config or to the inline Dockerfile changes it; a change to an ignored
// file or to where the checkout lives does not.
func TestBuildDigest(t *testing.T) {
	files := map[string]string{"Dockerfile": "FROM scratch\nCOPY a /a\n", "a": "1\n", "b.log": "x\n", ".dockerignore": "*.log\n"}
	one, two := t.TempDir(), t.TempDir()
	writeTree(t, one, files)
	writeTree(t, two, files)
	digest := func(spec BuildSpec) string {
		t.Helper()
		d, err := BuildDigest(spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := digest(BuildSpec{ContextDir: one})
	if d := digest(BuildSpec{ContextDir: two}); d != base {
		t.Errorf("the same files in another folder digest differently")
	}
	writeTree(t, two, map[string]string{"b.log": "changed\n"})
	if d := digest(BuildSpec{ContextDir: two}); d != base {
		t.Errorf("a change to an ignored file changed the digest")
	}
	v1 := "v1"
	for name, spec := range map[string]BuildSpec{
		"build arg":  {ContextDir: one, Args: map[string]*string{"VERSION": &v1}},
		"target":     {ContextDir: one, Target: "final"},
		"inline":     {ContextDir: one, DockerfileInline: "FROM scratch\n"},
		"dockerfile": {ContextDir: one, Dockerfile: "a"},
	} {
		if digest(spec) == base {
			t.Errorf("%s did not change the digest", name)
		}
	}
	writeTree(t, two, map[string]string{"a": "2\n"})
	if d := digest(BuildSpec{ContextDir: two}); d == base {
		t.Errorf("a change to a sent file did not change the digest")
	}
}

func TestBuildContextLimit(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "big": strings.Repeat("x", 4096)})
	_, err := contextFiles(BuildSpec{ContextDir: dir}, 1024)
	var tooBig *ContextTooBigError
	if !errors.As(err, &tooBig) || !strings.Contains(err.Error(), "images.max_build_context") {
		t.Fatalf("a 4 KiB context under a 1 KiB limit: %v", err)
	}
	if _, err := contextFiles(BuildSpec{ContextDir: dir}, 1<<20); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
}

func TestReadBuildOutput(t *testing.T) {
	ok := `{"stream":"Step 1/2 : FROM scratch\n"}
{"stream":" ---\u003e Running\n"}
{"aux":{"ID":"sha256:abc"}}
{"stream":"Successfully built abc\n"}
`
	id, err := readBuildOutput(strings.NewReader(ok))
	if err != nil || id != "sha256:abc" {
		t.Fatalf("successful build: %q, %v", id, err)
	}
	failed := `{"stream":"Step 1/3 : FROM scratch\n"}
{"stream":"Step 2/3 : COPY missing /x\n"}
{"errorDetail":{"message":"COPY failed: file not found in build context"},"error":"COPY failed: file not found in build context"}
`
	_, err = readBuildOutput(strings.NewReader(failed))
	var be *BuildError
	if !errors.As(err, &be) || be.Msg != "COPY failed: file not found in build context" || len(be.Lines) != 2 || be.Lines[1] != "Step 2/3 : COPY missing /x" {
		t.Fatalf("failed build: %#v", err)
	}
}

// BenchmarkBuildDigest reads a context of 1,000 files, 10 MiB in all, as a
// poll of a new revision does once per built service.
func BenchmarkBuildDigest(b *testing.B) {
	dir := b.TempDir()
	chunk := strings.Repeat("x", 10<<10)
	for i := range 1000 {
		p := filepath.Join(dir, "src", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%04d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(chunk), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY src /src\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1000 * int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildDigest(BuildSpec{ContextDir: dir}, 0); err != nil {
			b.Fatal(err)
		}
	}
}
