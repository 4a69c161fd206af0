package format

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// fileBufferSize batches writes to the snapshot files so that the
// compressor's and age's small chunks do not each become a system call.
const fileBufferSize = 1 << 20

// Write stores a volume's tar stream as a snapshot in dir and returns its
// manifest. The stream is taken as Docker's archive endpoint returns a
// directory: every entry under the directory's base name ("data/",
// "data/a.txt"); paths are kept as they are, so a restore through the same
// endpoint puts them back where they came from.
//
// The stream is stored byte for byte (compressed, and encrypted to the
// recipients when there are any) while each file is hashed on its way
// through, so memory stays bounded whatever the volume's size; only the
// manifest, one small record per entry, grows with the number of entries.
//
// dir must be absent or empty: a snapshot never mixes with anything else.
// The commit marker is written only once everything else is on disk; on
// any error Write removes what it wrote (dir too, if it created it) and
// leaves no marker. A stream without entries, or cut short, is an error:
// a snapshot that restores nothing, or half a volume, is worse than none.
func Write(ctx context.Context, dir string, tarStream io.Reader, recipients []age.Recipient) (m Manifest, err error) {
	created, err := prepareDir(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("write snapshot %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			removeSnapshot(dir, created)
			m, err = Manifest{}, fmt.Errorf("write snapshot %s: %w", dir, err)
		}
	}()
	m = Manifest{Version: Version, CreatedAt: time.Now().UTC().Truncate(time.Millisecond), Encrypted: len(recipients) > 0}
	if err := writeArchive(ctx, dir, tarStream, recipients, &m); err != nil {
		return m, err
	}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	if err := writeFile(filepath.Join(dir, ManifestName), func(w io.Writer) error { return writeManifest(w, &m) }); err != nil {
		return m, fmt.Errorf("write %s: %w", ManifestName, err)
	}
	// The marker must not reach the disk before the names of the files
	// it vouches for.
	if err := syncDir(dir); err != nil {
		return m, err
	}
	if err := writeFile(filepath.Join(dir, CommittedName), func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "gitopsd snapshot format %d\n", Version)
		return err
	}); err != nil {
		return m, fmt.Errorf("write %s: %w", CommittedName, err)
	}
	if err := syncDir(dir); err != nil {
		return m, err
	}
	return m, nil
}

// prepareDir makes sure dir exists and is empty, and says whether it made
// it, so that a failed Write knows whether the directory is its to remove.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Snapshots hold whatever the volume holds, secrets included.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
		// The new directory's name must survive a crash with the rest.
		return true, syncDir(filepath.Dir(dir))
	case err != nil:
		return false, err
	case len(entries) > 0:
		return false, fmt.Errorf("the directory is not empty (it has %s)", entries[0].Name())
	}
	return false, nil
}

// removeSnapshot undoes a failed Write, best effort: the error that made
// it fail is the one worth reporting. The marker goes first so that no
// moment exists where it stands beside partial files.
func removeSnapshot(dir string, created bool) {
	_ = os.Remove(filepath.Join(dir, CommittedName))
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	for _, name := range []string{ManifestName, ArchiveName, EncryptedArchiveName} {
		_ = os.Remove(filepath.Join(dir, name))
	}
}

// writeArchive streams the tar into the archive file, filling in the
// manifest's entries and totals and the archive's size and digest.
func writeArchive(ctx context.Context, dir string, tarStream io.Reader, recipients []age.Recipient, m *Manifest) error {
	name := archiveName(m.Encrypted)
	return writeFile(filepath.Join(dir, name), func(w io.Writer) error {
		stored := &digestWriter{sum: sha256.New()}
		var sink io.Writer = io.MultiWriter(w, stored)
		var sealer io.WriteCloser
		if m.Encrypted {
			var err error
			if sealer, err = age.Encrypt(sink, recipients...); err != nil {
				return fmt.Errorf("encrypt: %w", err)
			}
			sink = sealer
		}
		compressor, err := zstd.NewWriter(sink)
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		// Closing on every path stops the compressor's goroutines; after
		// the successful Close below this one is a no-op.
		defer compressor.Close()

		// Every byte the tar reader consumes goes to the compressor, so
		// the archive is the stream exactly as it came.
		stream := io.TeeReader(tarStream, compressor)
		seen := make(map[string]struct{})
		n, err := walkTar(ctx, stream, func(e Entry) error {
			if _, dup := seen[e.Path]; dup {
				return fmt.Errorf("%s appears twice in the tar stream", e.Path)
			}
			seen[e.Path] = struct{}{}
			m.Entries = append(m.Entries, e)
			if e.Type == TypeFile {
				m.Files++
				m.Bytes += e.Size
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the tar stream has no entries")
		}
		m.EntryCount = n
		// Whatever follows the end-of-archive marker (tar pads to a
		// record size) is kept, so the archive is byte-identical to the
		// stream.
		if _, err := io.Copy(io.Discard, &contextReader{ctx: ctx, r: stream}); err != nil {
			return fmt.Errorf("read the end of the tar stream: %w", err)
		}
		if err := compressor.Close(); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		if sealer != nil {
			if err := sealer.Close(); err != nil {
				return fmt.Errorf("encrypt: %w", err)
			}
		}
		m.ArchiveSize, m.ArchiveSHA256 = stored.n, hex.EncodeToString(stored.sum.Sum(nil))
		return nil
	})
}

// writeManifest writes the manifest one entry per line, streaming, so it
// is never built whole in memory and diffs and greps well.
func writeManifest(w io.Writer, m *Manifest) error {
	head := *m
	head.Entries = nil
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	// b is `{...}` without entries (omitempty); reopen it to append them.
	if _, err := fmt.Fprintf(w, "%s,\n\"entries\": [\n", b[:len(b)-1]); err != nil {
		return err
	}
	for i, e := range m.Entries {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		sep := ",\n"
		if i == len(m.Entries)-1 {
			sep = "\n"
		}
		if _, err := fmt.Fprintf(w, "%s%s", line, sep); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "]}\n")
	return err
}

// writeFile creates name (never over an existing file), lets fill write
// it through a buffer, and fsyncs it, so that a file that exists after a
// successful writeFile is on disk in full.
func writeFile(name string, fill func(io.Writer) error) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	buffered := bufio.NewWriterSize(f, fileBufferSize)
	err = fill(buffered)
	if err == nil {
		err = buffered.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// syncDir fsyncs a directory so that the names created in it are durable,
// not only the files' contents.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// digestWriter measures what reaches the archive file.
type digestWriter struct {
	sum hash.Hash
	n   int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	d.sum.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}
