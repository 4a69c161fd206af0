package format

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// maxWindow caps the memory the decompressor may be asked for. Write's
// streams need 8 MiB; 128 MiB still reads an archive recompressed by hand
// with `zstd --long`, and keeps a damaged or hostile header from claiming
// gigabytes.
const maxWindow = 128 << 20

// Open returns a committed snapshot's tar stream, decrypted with the
// identities when the snapshot is encrypted, and decompressed; the caller
// closes it. It does not check the archive's digest first (that would read
// it twice): a damaged archive fails while being read, through zstd's
// checksum, and Verify is the check to run before trusting a snapshot.
func Open(dir string, identities []age.Identity) (io.ReadCloser, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, archiveName(m.Encrypted)))
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", dir, err)
	}
	plain, closeDecoder, err := decode(f, m.Encrypted, identities)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open snapshot %s: %w", dir, err)
	}
	return &tarReader{Reader: plain, close: func() error {
		closeDecoder()
		return f.Close()
	}}, nil
}

type tarReader struct {
	io.Reader
	close func() error
}

func (t *tarReader) Close() error { return t.close() }

// decode turns a stored archive back into the tar stream. The returned
// func releases the decompressor's goroutines and must be called.
func decode(archive io.Reader, encrypted bool, identities []age.Identity) (io.Reader, func(), error) {
	if encrypted {
		if len(identities) == 0 {
			return nil, nil, errors.New("the snapshot is encrypted and no age identity was given to decrypt it")
		}
		var err error
		if archive, err = age.Decrypt(archive, identities...); err != nil {
			return nil, nil, fmt.Errorf("decrypt: %w", err)
		}
	}
	dec, err := zstd.NewReader(archive, zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return nil, nil, fmt.Errorf("decompress: %w", err)
	}
	return dec, dec.Close, nil
}

// Verify is the level-1 restore test: it reads the whole archive back,
// decrypting and decompressing it, and checks it against the manifest: the
// archive's size and sha256, then every entry by path (type, mode, owner,
// size, link target, and the sha256 of every file), none missing and none
// extra. A difference is reported as a *Mismatch (wrapped) naming the
// first entry that differs and how, or the archive as a whole.
//
// The archive is read once: its digest is computed while it is being
// decompressed. When decompressing or an entry fails, the rest of the file
// is still hashed, and a digest that differs is reported rather than the
// symptom, because "the archive changed on disk" is the cause to act on.
func Verify(ctx context.Context, dir string, identities []age.Identity) error {
	if err := verify(ctx, dir, identities); err != nil {
		return fmt.Errorf("verify snapshot %s: %w", dir, err)
	}
	return nil
}

func verify(ctx context.Context, dir string, identities []age.Identity) error {
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	if err := m.checkTotals(); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(dir, archiveName(m.Encrypted)))
	if err != nil {
		return err
	}
	defer f.Close()
	stored := &digestWriter{sum: sha256.New()}
	archive := io.TeeReader(&contextReader{ctx: ctx, r: f}, stored)

	plain, closeDecoder, err := decode(archive, m.Encrypted, identities)
	if err != nil {
		// A wrong or missing key says nothing about the archive; do not
		// read gigabytes to find that out.
		return err
	}
	contentErr := compareStream(ctx, m, plain)
	if contentErr == nil {
		// Reading to the end checks the rest of the zstd frame and its
		// checksum, past the tar's end-of-archive marker.
		if _, err := io.Copy(io.Discard, plain); err != nil {
			contentErr = fmt.Errorf("decompress: %w", err)
		}
	}
	// The decompressor reads ahead in its own goroutines; it must be
	// stopped before this goroutine reads the archive itself.
	closeDecoder()
	if ctx.Err() != nil {
		return errors.Join(contentErr, ctx.Err())
	}
	if _, err := io.Copy(io.Discard, archive); err != nil {
		return errors.Join(contentErr, fmt.Errorf("read %s: %w", archiveName(m.Encrypted), err))
	}

	var whole *Mismatch
	switch sum := hex.EncodeToString(stored.sum.Sum(nil)); {
	case stored.n != m.ArchiveSize:
		whole = &Mismatch{Reason: fmt.Sprintf("archive size differs from the manifest (%s: manifest %d bytes, found %d)", archiveName(m.Encrypted), m.ArchiveSize, stored.n)}
	case sum != m.ArchiveSHA256:
		whole = &Mismatch{Reason: fmt.Sprintf("archive sha256 differs from the manifest (%s: manifest %s, found %s)", archiveName(m.Encrypted), shortHash(m.ArchiveSHA256), shortHash(sum))}
	}
	switch {
	case whole != nil && contentErr != nil:
		return fmt.Errorf("%w; reading it: %v", whole, contentErr)
	case whole != nil:
		return whole
	}
	return contentErr
}
