package format

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
)

// tarBlockSize is the tar record unit; the end-of-archive marker is made
// of such blocks of zeros.
const tarBlockSize = 512

// copyBufferSize sizes the buffer file contents are hashed through: large
// enough that hashing runs at memory speed, small enough to not matter.
const copyBufferSize = 256 << 10

// walkTar reads a tar stream entry by entry, hashing each file's content as
// it streams past so that no file is ever held in memory, and hands every
// entry to visit in stream order. It returns how many entries it saw.
//
// A stream that stops at an entry boundary without the end-of-archive
// marker is an error: Go's tar reader takes it as a clean end, but it is
// what a helper container dying mid-read looks like, and such a snapshot
// would silently lack the rest of the volume.
func walkTar(ctx context.Context, r io.Reader, visit func(Entry) error) (int, error) {
	counted := &countingReader{r: &contextReader{ctx: ctx, r: r}}
	tr := tar.NewReader(counted)
	buf := make([]byte, copyBufferSize)
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return entries, err
		}
		before := counted.n
		hdr, err := tr.Next()
		if err == io.EOF {
			// Next consumes the previous entry's padding (less than a
			// block) before it finds the marker (one or two zero blocks).
			if entries > 0 && counted.n-before < tarBlockSize {
				return entries, errors.New("the tar stream ends without its end-of-archive marker (cut short?)")
			}
			return entries, nil
		}
		// An absolute or ".." name is recorded as it is; whether to
		// extract it is the restoring side's business.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return entries, fmt.Errorf("read the tar stream after %d entries: %w", entries, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // metadata for the whole archive, not something a restore creates
		}
		e := entryOf(hdr)
		if e.Type == TypeFile {
			sum := sha256.New()
			n, err := io.CopyBuffer(sum, tr, buf)
			if err != nil {
				return entries, fmt.Errorf("read %s from the tar stream: %w", e.Path, err)
			}
			e.Size, e.SHA256 = n, hex.EncodeToString(sum.Sum(nil))
		} else if _, err := io.CopyBuffer(io.Discard, tr, buf); err != nil {
			// Reading the body here keeps the end-marker check above exact.
			return entries, fmt.Errorf("read %s from the tar stream: %w", e.Path, err)
		}
		entries++
		if err := visit(e); err != nil {
			return entries, err
		}
	}
}

// entryOf describes a tar header as the manifest records it.
func entryOf(hdr *tar.Header) Entry {
	e := Entry{Path: path.Clean(hdr.Name), Mode: uint32(hdr.Mode & 0o7777), UID: hdr.Uid, GID: hdr.Gid}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		// Contiguous and sparse files restore as ordinary files with
		// the same content.
		e.Type, e.Size = TypeFile, hdr.Size
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		// The target is kept as written: cleaning "a/../b" would change
		// what a symlink resolves to.
		e.Type, e.Link = TypeSymlink, hdr.Linkname
	case tar.TypeLink:
		e.Type, e.Link = TypeHardlink, path.Clean(hdr.Linkname)
	default:
		e.Type, e.Size = TypeOther, hdr.Size
	}
	return e
}

// countingReader tells walkTar how far the tar reader has read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// contextReader stops a long read (one huge file) when the job is
// cancelled, not only between entries.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
