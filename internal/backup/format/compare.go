package format

import (
	"context"
	"fmt"
	"io"
)

// Mismatch is a difference between a snapshot's manifest and what was
// actually found: the answer a restore test gives, precise enough to act
// on. Errors from Verify and Compare wrap it; find it with errors.As.
type Mismatch struct {
	// Path is the entry that differs, as in the manifest; empty when the
	// archive as a whole differs (its size or sha256) or the manifest
	// contradicts itself.
	Path string
	// Reason says how, e.g. "sha256 differs (manifest 3a7bd3e2360a…, found 9f86d081884c…)".
	Reason string
}

func (m *Mismatch) Error() string {
	if m.Path == "" {
		return m.Reason
	}
	return m.Path + ": " + m.Reason
}

// Compare checks a tar stream, such as one read back from a volume the
// snapshot was restored into, against the manifest entry by entry and
// returns a *Mismatch (wrapped) naming the first difference. Entries are
// matched by path, because a tar read back from a restored volume need not
// list them in the original order. Modification times are not compared.
//
// Which name of a set of hardlinked files a tar carries as the file and
// which as links depends on the order it walked them in, so a hardlink on
// one side matches a file or another hardlink of the same set on the other
// as long as the content and its attributes agree.
func Compare(ctx context.Context, m Manifest, tarStream io.Reader) error {
	if err := compareStream(ctx, m, tarStream); err != nil {
		return fmt.Errorf("compare with the manifest: %w", err)
	}
	return nil
}

// compareStream is the comparison Verify and Compare share, so that the
// level-1 and level-2 restore tests apply the same rules.
func compareStream(ctx context.Context, m Manifest, tarStream io.Reader) error {
	c, err := newChecker(m)
	if err != nil {
		return err
	}
	if _, err := walkTar(ctx, tarStream, c.check); err != nil {
		return err
	}
	return c.finish()
}

// checker matches entries of a tar stream against a manifest by path.
type checker struct {
	want  []Entry
	index map[string]int
	seen  []bool
}

func newChecker(m Manifest) (*checker, error) {
	c := &checker{want: m.Entries, index: make(map[string]int, len(m.Entries)), seen: make([]bool, len(m.Entries))}
	for i, e := range m.Entries {
		if _, dup := c.index[e.Path]; dup {
			return nil, &Mismatch{Path: e.Path, Reason: "appears twice in the manifest"}
		}
		c.index[e.Path] = i
	}
	return c, nil
}

// check compares one entry of the stream with the manifest's entry of the
// same path.
func (c *checker) check(got Entry) error {
	i, ok := c.index[got.Path]
	if !ok {
		return &Mismatch{Path: got.Path, Reason: "found in the tar but not in the manifest"}
	}
	if c.seen[i] {
		return &Mismatch{Path: got.Path, Reason: "appears twice in the tar"}
	}
	if got.Type == TypeHardlink {
		// tar -x, and the engine, cannot link to a file not yet extracted.
		if j, ok := c.index[got.Link]; !ok || !c.seen[j] {
			return &Mismatch{Path: got.Path, Reason: fmt.Sprintf("hardlink to %s, which does not come before it in the tar", got.Link)}
		}
	}
	c.seen[i] = true
	want := c.want[i]
	if (want.Type == TypeHardlink || got.Type == TypeHardlink) && (want.Type != got.Type || want.Link != got.Link) {
		return c.checkLinked(want, got)
	}
	if reason := differs(want, got); reason != "" {
		return &Mismatch{Path: got.Path, Reason: reason}
	}
	return nil
}

// checkLinked compares a hardlink with what stands in its place on the
// other side by the file each one's content comes from.
func (c *checker) checkLinked(want, got Entry) error {
	wantFile, err := c.resolve(want)
	if err != nil {
		return err
	}
	gotFile := got
	if got.Type == TypeHardlink {
		// The target came earlier in the stream (check made sure) and
		// was found equal to the manifest's entry of that path, so the
		// manifest's side stands for it.
		if gotFile, err = c.resolve(c.want[c.index[got.Link]]); err != nil {
			return err
		}
	}
	if reason := differs(wantFile, gotFile); reason != "" {
		return &Mismatch{Path: want.Path, Reason: fmt.Sprintf("%s (comparing the hardlinked files %s and %s)", reason, wantFile.Path, gotFile.Path)}
	}
	return nil
}

// resolve follows a manifest hardlink to the file entry that holds the
// content.
func (c *checker) resolve(e Entry) (Entry, error) {
	start := e
	for hops := 0; e.Type == TypeHardlink; hops++ {
		i, ok := c.index[e.Link]
		if !ok || hops > len(c.want) {
			return Entry{}, &Mismatch{Path: start.Path, Reason: fmt.Sprintf("the manifest's hardlink target %s is not in the manifest", e.Link)}
		}
		e = c.want[i]
	}
	return e, nil
}

// finish reports the first manifest entry the stream never had.
func (c *checker) finish() error {
	for i, seen := range c.seen {
		if !seen {
			return &Mismatch{Path: c.want[i].Path, Reason: "in the manifest but missing from the tar"}
		}
	}
	return nil
}

// differs compares two entries field by field and names the first field
// that differs, with both values so the cause is visible; "" when equal.
func differs(want, got Entry) string {
	bad := fmt.Sprintf
	switch {
	case want.Type != got.Type:
		return bad("type differs (manifest %s, found %s)", want.Type, got.Type)
	case want.Link != got.Link:
		return bad("link target differs (manifest %q, found %q)", want.Link, got.Link)
	case want.Mode != got.Mode:
		return bad("mode differs (manifest %s, found %s)", octal(want.Mode), octal(got.Mode))
	case want.UID != got.UID:
		return bad("uid differs (manifest %d, found %d)", want.UID, got.UID)
	case want.GID != got.GID:
		return bad("gid differs (manifest %d, found %d)", want.GID, got.GID)
	case want.Size != got.Size:
		return bad("size differs (manifest %d, found %d)", want.Size, got.Size)
	case want.SHA256 != got.SHA256:
		return bad("sha256 differs (manifest %s, found %s)", shortHash(want.SHA256), shortHash(got.SHA256))
	}
	return ""
}

// shortHash keeps a mismatch message readable; twelve hex digits tell two
// digests apart.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
