package format

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// testEntry is one entry of a tar built for a test, with its content.
type testEntry struct {
	hdr     tar.Header
	content []byte
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// volume is a tree as Docker's archive endpoint returns a directory named
// "data": every kind of entry, odd modes and owners, an empty and a
// multi-MiB file.
func volume() []testEntry {
	mtime := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	dir := func(name string, mode int64, uid, gid int) testEntry {
		return testEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mtime}}
	}
	file := func(name string, mode int64, uid, gid int, content []byte) testEntry {
		return testEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(content)), ModTime: mtime}, content: content}
	}
	return []testEntry{
		dir("data/", 0o755, 0, 0),
		dir("data/bin/", 0o755, 0, 0),
		file("data/bin/tool", 0o4755, 0, 0, []byte("#!/bin/sh\necho tool\n")),
		file("data/big.bin", 0o644, 65534, 65534, randomBytes(1, 3<<20+17)),
		dir("data/db/", 0o700, 1000, 1000),
		file("data/db/file.bin", 0o600, 1000, 1000, randomBytes(2, 100_000)),
		file("data/empty.txt", 0o644, 0, 0, nil),
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "data/fifo", Mode: 0o640, Uid: 1000, Gid: 1000, ModTime: mtime}},
		file("data/hello.txt", 0o600, 1000, 1000, []byte("hello\n")),
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "data/hello.hard", Linkname: "data/hello.txt", Mode: 0o600, Uid: 1000, Gid: 1000, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "data/hello.link", Linkname: "hello.txt", Mode: 0o777, ModTime: mtime}},
		dir("data/tmp/", 0o1777, 0, 0),
	}
}

func tarOf(t testing.TB, entries []testEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readTar lists a tar stream's headers and contents for comparison.
func readTar(t *testing.T, r io.Reader) []testEntry {
	t.Helper()
	var out []testEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, testEntry{hdr: *hdr, content: content})
	}
}

func writeSnapshot(t *testing.T, entries []testEntry, recipients ...age.Recipient) (string, Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stack", "vol", "1")
	m, err := Write(context.Background(), dir, bytes.NewReader(tarOf(t, entries)), recipients)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func wantMismatch(t *testing.T, err error, path, reason string) {
	t.Helper()
	var mm *Mismatch
	if !errors.As(err, &mm) {
		t.Fatalf("want a *Mismatch for %q (%s), got %v", path, reason, err)
	}
	if mm.Path != path || !strings.HasPrefix(mm.Reason, reason) {
		t.Fatalf("want mismatch %q: %s..., got %q: %s", path, reason, mm.Path, mm.Reason)
	}
}

func TestWriteVerifyOpen(t *testing.T) {
	in := volume()
	raw := tarOf(t, in)
	dir, m := writeSnapshot(t, in)

	if !Committed(dir) {
		t.Fatal("a written snapshot is not committed")
	}
	if err := Verify(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ArchiveName, ManifestName, CommittedName} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600 (snapshots hold secrets)", name, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, EncryptedArchiveName)); !os.IsNotExist(err) {
		t.Errorf("an unencrypted snapshot has %s", EncryptedArchiveName)
	}

	read, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if read.Version != 1 || read.Encrypted || !read.CreatedAt.Equal(m.CreatedAt) || time.Since(read.CreatedAt) > time.Minute {
		t.Errorf("manifest head: %+v", read)
	}
	sumOf := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	archive, err := os.ReadFile(filepath.Join(dir, ArchiveName))
	if err != nil {
		t.Fatal(err)
	}
	if read.ArchiveSize != int64(len(archive)) || read.ArchiveSHA256 != sumOf(archive) {
		t.Errorf("archive size/sha256 in the manifest: %d %s, file: %d %s", read.ArchiveSize, read.ArchiveSHA256, len(archive), sumOf(archive))
	}
	want := []Entry{
		{Path: "data", Type: TypeDir, Mode: 0o755},
		{Path: "data/bin", Type: TypeDir, Mode: 0o755},
		{Path: "data/bin/tool", Type: TypeFile, Mode: 0o4755, Size: int64(len(in[2].content)), SHA256: sumOf(in[2].content)},
		{Path: "data/big.bin", Type: TypeFile, Mode: 0o644, UID: 65534, GID: 65534, Size: 3<<20 + 17, SHA256: sumOf(in[3].content)},
		{Path: "data/db", Type: TypeDir, Mode: 0o700, UID: 1000, GID: 1000},
		{Path: "data/db/file.bin", Type: TypeFile, Mode: 0o600, UID: 1000, GID: 1000, Size: 100_000, SHA256: sumOf(in[5].content)},
		{Path: "data/empty.txt", Type: TypeFile, Mode: 0o644, SHA256: sumOf(nil)},
		{Path: "data/fifo", Type: TypeOther, Mode: 0o640, UID: 1000, GID: 1000},
		{Path: "data/hello.txt", Type: TypeFile, Mode: 0o600, UID: 1000, GID: 1000, Size: 6, SHA256: sumOf([]byte("hello\n"))},
		{Path: "data/hello.hard", Type: TypeHardlink, Mode: 0o600, UID: 1000, GID: 1000, Link: "data/hello.txt"},
		{Path: "data/hello.link", Type: TypeSymlink, Mode: 0o777, Link: "hello.txt"},
		{Path: "data/tmp", Type: TypeDir, Mode: 0o1777},
	}
	if !slices.Equal(read.Entries, want) {
		t.Errorf("manifest entries:\n got %+v\nwant %+v", read.Entries, want)
	}
	if read.EntryCount != len(want) || read.Files != 5 || read.Bytes != int64(len(in[2].content)+len(in[3].content)+100_000+6) {
		t.Errorf("totals: entries %d files %d bytes %d", read.EntryCount, read.Files, read.Bytes)
	}
	if !slices.Equal(m.Entries, read.Entries) || m.ArchiveSHA256 != read.ArchiveSHA256 || m.Bytes != read.Bytes {
		t.Error("Write's manifest differs from the one on disk")
	}
	text, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"mode":"04755"`, `"mode":"01777"`, `"created_at":"`, `"archive_sha256":"`} {
		if !bytes.Contains(text, []byte(s)) {
			t.Errorf("manifest.json lacks %s:\n%s", s, text)
		}
	}

	rc, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stream, raw) {
		t.Fatal("Open does not return the stream Write was given, byte for byte")
	}
	out := readTar(t, bytes.NewReader(stream))
	if len(out) != len(in) {
		t.Fatalf("%d entries read back, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.hdr.Name != b.hdr.Name || a.hdr.Typeflag != b.hdr.Typeflag || a.hdr.Mode != b.hdr.Mode || a.hdr.Uid != b.hdr.Uid || a.hdr.Linkname != b.hdr.Linkname || !bytes.Equal(a.content, b.content) {
			t.Errorf("entry %d: read back %+v, want %+v", i, b.hdr, a.hdr)
		}
	}
}

// TestPlainTools checks the package documentation's promise that zstd and
// tar restore a snapshot without gitopsd.
func TestPlainTools(t *testing.T) {
	for _, tool := range []string{"bash", "zstd", "tar"} {
		testenv.NeedTool(t, tool, tool)
	}
	dir, _ := writeSnapshot(t, volume())
	cmd := exec.Command("bash", "-o", "pipefail", "-c", "zstd -q -d -c "+ArchiveName+" | tar -t")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "data/db/file.bin\n") || !strings.Contains(string(out), "data/hello.hard\n") {
		t.Errorf("tar -t lists:\n%s", out)
	}
}

func TestEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	raw := tarOf(t, volume())
	dir, m := writeSnapshot(t, volume(), id.Recipient())
	if !m.Encrypted {
		t.Error("manifest does not say encrypted")
	}
	if _, err := os.Stat(filepath.Join(dir, ArchiveName)); !os.IsNotExist(err) {
		t.Errorf("an encrypted snapshot has a plain %s", ArchiveName)
	}
	if err := Verify(context.Background(), dir, []age.Identity{other, id}); err != nil {
		t.Fatal(err)
	}
	rc, err := Open(dir, []age.Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(stream, raw) {
		t.Fatalf("Open with the identity: %v (equal %v)", err, bytes.Equal(stream, raw))
	}

	// age -d | zstd -d, as the package documentation says.
	f, err := os.Open(filepath.Join(dir, EncryptedArchiveName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if stream, err = io.ReadAll(dec); err != nil || !bytes.Equal(stream, raw) {
		t.Fatalf("age then zstd: %v (equal %v)", err, bytes.Equal(stream, raw))
	}

	for name, ids := range map[string][]age.Identity{"no identity": nil, "another identity": {other}} {
		err := Verify(context.Background(), dir, ids)
		if err == nil {
			t.Errorf("Verify with %s passed", name)
		}
		var mm *Mismatch
		if errors.As(err, &mm) {
			t.Errorf("Verify with %s blames the archive: %v", name, err)
		}
		if _, err := Open(dir, ids); err == nil {
			t.Errorf("Open with %s worked", name)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	t.Run("flipped byte in the archive", func(t *testing.T) {
		dir, _ := writeSnapshot(t, volume())
		name := filepath.Join(dir, ArchiveName)
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1024 {
			t.Fatalf("archive of %d bytes is too small to damage in the middle", len(b))
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err = Verify(context.Background(), dir, nil)
		wantMismatch(t, err, "", "archive sha256 differs from the manifest")
		t.Log(err)
	})
	t.Run("flipped byte in an encrypted archive", func(t *testing.T) {
		id, _ := age.GenerateX25519Identity()
		dir, _ := writeSnapshot(t, volume(), id.Recipient())
		name := filepath.Join(dir, EncryptedArchiveName)
		b, _ := os.ReadFile(name)
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		wantMismatch(t, Verify(context.Background(), dir, []age.Identity{id}), "", "archive sha256 differs from the manifest")
	})
	t.Run("file digest changed in the manifest", func(t *testing.T) {
		dir, m := writeSnapshot(t, volume())
		for i := range m.Entries {
			if m.Entries[i].Path == "data/db/file.bin" {
				m.Entries[i].SHA256 = strings.Repeat("0", 64)
			}
		}
		rewriteManifest(t, dir, m)
		err := Verify(context.Background(), dir, nil)
		wantMismatch(t, err, "data/db/file.bin", "sha256 differs")
		t.Log(err)
	})
	t.Run("mode changed in the manifest", func(t *testing.T) {
		dir, m := writeSnapshot(t, volume())
		m.Entries[len(m.Entries)-1].Mode = 0o777
		rewriteManifest(t, dir, m)
		wantMismatch(t, Verify(context.Background(), dir, nil), "data/tmp", "mode differs (manifest 0777, found 01777)")
	})
	t.Run("entry dropped from the manifest", func(t *testing.T) {
		dir, m := writeSnapshot(t, volume())
		m.Entries = slices.Delete(m.Entries, 6, 7) // data/empty.txt
		m.EntryCount, m.Files = m.EntryCount-1, m.Files-1
		rewriteManifest(t, dir, m)
		wantMismatch(t, Verify(context.Background(), dir, nil), "data/empty.txt", "found in the tar but not in the manifest")
	})
	t.Run("totals changed in the manifest", func(t *testing.T) {
		dir, m := writeSnapshot(t, volume())
		m.Bytes++
		rewriteManifest(t, dir, m)
		wantMismatch(t, Verify(context.Background(), dir, nil), "", "manifest totals differ")
	})
	t.Run("archive truncated", func(t *testing.T) {
		dir, m := writeSnapshot(t, volume())
		if err := os.Truncate(filepath.Join(dir, ArchiveName), m.ArchiveSize-100); err != nil {
			t.Fatal(err)
		}
		wantMismatch(t, Verify(context.Background(), dir, nil), "", "archive size differs")
	})
}

func rewriteManifest(t *testing.T, dir string, m Manifest) {
	t.Helper()
	name := filepath.Join(dir, ManifestName)
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(name, func(w io.Writer) error { return writeManifest(w, &m) }); err != nil {
		t.Fatal(err)
	}
}

func TestUncommittedRefused(t *testing.T) {
	dir, _ := writeSnapshot(t, volume())
	if err := os.Remove(filepath.Join(dir, CommittedName)); err != nil {
		t.Fatal(err)
	}
	if Committed(dir) {
		t.Error("Committed without the marker")
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrNotCommitted) {
		t.Errorf("Open: %v", err)
	}
	if err := Verify(context.Background(), dir, nil); !errors.Is(err, ErrNotCommitted) {
		t.Errorf("Verify: %v", err)
	}
	if _, err := ReadManifest(dir); !errors.Is(err, ErrNotCommitted) {
		t.Errorf("ReadManifest: %v", err)
	}
	if Committed(filepath.Join(t.TempDir(), "absent")) {
		t.Error("Committed for a missing directory")
	}
}

func TestCompare(t *testing.T) {
	_, m := writeSnapshot(t, volume())
	compare := func(entries []testEntry) error {
		return Compare(context.Background(), m, bytes.NewReader(tarOf(t, entries)))
	}
	if err := compare(volume()); err != nil {
		t.Fatalf("the same stream: %v", err)
	}

	t.Run("another order", func(t *testing.T) {
		entries := volume()
		slices.Reverse(entries)
		// A hardlink still has to follow its target.
		i := slices.IndexFunc(entries, func(e testEntry) bool { return e.hdr.Typeflag == tar.TypeLink })
		link := entries[i]
		entries = append(slices.Delete(entries, i, i+1), link)
		if err := compare(entries); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("hardlink roles swapped", func(t *testing.T) {
		entries := volume()
		for i, e := range entries {
			switch e.hdr.Name {
			case "data/hello.txt":
				entries[i] = testEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "data/hello.txt", Linkname: "data/hello.hard", Mode: 0o600, Uid: 1000, Gid: 1000}}
			case "data/hello.hard":
				h := e.hdr
				h.Typeflag, h.Linkname, h.Size = tar.TypeReg, "", 6
				entries[i] = testEntry{hdr: h, content: []byte("hello\n")}
			}
		}
		// The file must come first now.
		slices.SortStableFunc(entries, func(a, b testEntry) int {
			return strings.Compare(strings.Replace(a.hdr.Name, "hello.hard", "hello.a", 1), strings.Replace(b.hdr.Name, "hello.hard", "hello.a", 1))
		})
		if err := compare(entries); err != nil {
			t.Fatal(err)
		}
		entries[slices.IndexFunc(entries, func(e testEntry) bool { return e.hdr.Name == "data/hello.hard" })].content = []byte("HELLO\n")
		wantMismatch(t, compare(entries), "data/hello.hard", "sha256 differs")
	})
	t.Run("content changed", func(t *testing.T) {
		entries := volume()
		entries[8].content = []byte("hellO\n")
		err := compare(entries)
		wantMismatch(t, err, "data/hello.txt", "sha256 differs")
		t.Log(err)
	})
	t.Run("owner changed", func(t *testing.T) {
		entries := volume()
		entries[4].hdr.Uid = 0
		wantMismatch(t, compare(entries), "data/db", "uid differs (manifest 1000, found 0)")
	})
	t.Run("symlink retargeted", func(t *testing.T) {
		entries := volume()
		entries[10].hdr.Linkname = "/etc/passwd"
		wantMismatch(t, compare(entries), "data/hello.link", "link target differs")
	})
	t.Run("type changed", func(t *testing.T) {
		entries := volume()
		entries[7] = testEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "data/fifo", Mode: 0o640, Uid: 1000, Gid: 1000}}
		wantMismatch(t, compare(entries), "data/fifo", "type differs (manifest other, found file)")
	})
	t.Run("missing entry", func(t *testing.T) {
		entries := slices.Delete(volume(), 6, 7)
		err := compare(entries)
		wantMismatch(t, err, "data/empty.txt", "in the manifest but missing from the tar")
		t.Log(err)
	})
	t.Run("extra entry", func(t *testing.T) {
		entries := append(volume(), testEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "data/new.txt", Mode: 0o644, Size: 1}, content: []byte("x")})
		err := compare(entries)
		wantMismatch(t, err, "data/new.txt", "found in the tar but not in the manifest")
		t.Log(err)
	})
	t.Run("entry twice", func(t *testing.T) {
		entries := append(volume(), volume()[8])
		wantMismatch(t, compare(entries), "data/hello.txt", "appears twice in the tar")
	})
	t.Run("hardlink before its target", func(t *testing.T) {
		entries := volume()
		link := entries[9]
		entries = slices.Insert(slices.Delete(entries, 9, 10), 1, link)
		wantMismatch(t, compare(entries), "data/hello.hard", "hardlink to data/hello.txt, which does not come before it")
	})
	t.Run("empty stream", func(t *testing.T) {
		wantMismatch(t, Compare(context.Background(), m, bytes.NewReader(nil)), "data", "in the manifest but missing")
	})
}

func TestWriteRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "something")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(context.Background(), dir, bytes.NewReader(tarOf(t, volume())), nil); err == nil {
		t.Fatal("Write into a non-empty directory worked")
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Fatalf("Write touched what was there: %q, %v", b, err)
	}
	if Committed(dir) {
		t.Fatal("committed")
	}
}

func TestWriteIntoEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(context.Background(), dir, bytes.NewReader(tarOf(t, volume())), nil); err != nil {
		t.Fatal(err)
	}
	if err := Verify(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFailureLeavesNothing covers streams a snapshot must not be made
// of: each leaves no marker and no files.
func TestWriteFailureLeavesNothing(t *testing.T) {
	raw := tarOf(t, volume())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := map[string]struct {
		ctx    context.Context
		stream io.Reader
		want   string
	}{
		"cut inside a file":         {context.Background(), bytes.NewReader(raw[:len(raw)/2]), "unexpected EOF"},
		"cut before the end marker": {context.Background(), bytes.NewReader(raw[:len(raw)-1024]), "end-of-archive marker"},
		"no entries":                {context.Background(), bytes.NewReader(make([]byte, 1024)), "no entries"},
		"nothing at all":            {context.Background(), bytes.NewReader(nil), "no entries"},
		"not a tar":                 {context.Background(), strings.NewReader(strings.Repeat("not a tar ", 100)), "read the tar stream"},
		"cancelled":                 {cancelled, bytes.NewReader(raw), "context canceled"},
		"read error":                {context.Background(), io.MultiReader(bytes.NewReader(raw[:1<<20]), errReader{}), "volume went away"},
		"the same path twice":       {context.Background(), bytes.NewReader(tarOf(t, append(volume(), volume()[8]))), "data/hello.txt appears twice"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "snap")
			_, err := Write(c.ctx, dir, c.stream, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "write snapshot "+dir) {
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the failed snapshot's directory is still there (%v)", err)
			}
		})
	}
	t.Run("into an existing empty directory", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := Write(context.Background(), dir, bytes.NewReader(raw[:len(raw)/2]), nil); err == nil {
			t.Fatal("no error")
		}
		left, err := os.ReadDir(dir)
		if err != nil || len(left) != 0 {
			t.Fatalf("left %v (%v)", left, err)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("volume went away") }

func TestManifestJSONRoundTrip(t *testing.T) {
	in := Entry{Path: "data/x", Type: TypeFile, Mode: 0o2755, UID: 7, GID: 8, Size: 3, SHA256: "ab"}
	var buf bytes.Buffer
	m := Manifest{Version: 1, EntryCount: 1, Entries: []Entry{in}}
	if err := writeManifest(&buf, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"mode":"02755"`) {
		t.Errorf("mode not octal: %s", buf.String())
	}
	var out Manifest
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Entries) != 1 || out.Entries[0] != in {
		t.Errorf("round trip: %+v", out.Entries)
	}
}
