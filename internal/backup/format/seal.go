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
)

// Seal writes into dst a copy of the committed, unencrypted snapshot in
// src with its archive encrypted to recipients: the same entries and
// creation time, the archive's size and digest those of the encrypted
// file, and the commit marker last. It is how a snapshot kept in the clear
// on the host leaves it encrypted (backup.remote.recipients). dst must be
// absent or empty; on any error Seal removes what it wrote.
func Seal(ctx context.Context, src, dst string, recipients []age.Recipient) (m Manifest, err error) {
	if len(recipients) == 0 {
		return Manifest{}, errors.New("seal: no recipients")
	}
	if m, err = ReadManifest(src); err != nil {
		return Manifest{}, err
	}
	if m.Encrypted {
		return Manifest{}, fmt.Errorf("seal %s: the snapshot is encrypted already", src)
	}
	created, err := prepareDir(dst)
	if err != nil {
		return Manifest{}, fmt.Errorf("seal snapshot into %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			removeSnapshot(dst, created)
			m, err = Manifest{}, fmt.Errorf("seal snapshot %s into %s: %w", src, dst, err)
		}
	}()
	wantSize, wantSum := m.ArchiveSize, m.ArchiveSHA256
	in, err := os.Open(filepath.Join(src, ArchiveName))
	if err != nil {
		return m, err
	}
	defer in.Close()
	// The archive is checked on its way through: a copy of a rotten
	// snapshot, encrypted, would look sound on the remote.
	plain := sha256.New()
	var n int64
	if err := writeFile(filepath.Join(dst, EncryptedArchiveName), func(w io.Writer) error {
		stored := &digestWriter{sum: sha256.New()}
		sealer, err := age.Encrypt(io.MultiWriter(w, stored), recipients...)
		if err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
		if n, err = io.Copy(io.MultiWriter(sealer, plain), &contextReader{ctx: ctx, r: in}); err != nil {
			return err
		}
		if err := sealer.Close(); err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
		m.ArchiveSize, m.ArchiveSHA256 = stored.n, hex.EncodeToString(stored.sum.Sum(nil))
		return nil
	}); err != nil {
		return m, err
	}
	if n != wantSize || hex.EncodeToString(plain.Sum(nil)) != wantSum {
		return m, &Mismatch{Reason: fmt.Sprintf("%s differs from its manifest", filepath.Join(src, ArchiveName))}
	}
	m.Encrypted = true
	if err := writeFile(filepath.Join(dst, ManifestName), func(w io.Writer) error { return writeManifest(w, &m) }); err != nil {
		return m, fmt.Errorf("write %s: %w", ManifestName, err)
	}
	if err := syncDir(dst); err != nil {
		return m, err
	}
	if err := writeFile(filepath.Join(dst, CommittedName), func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "gitopsd snapshot format %d\n", Version)
		return err
	}); err != nil {
		return m, fmt.Errorf("write %s: %w", CommittedName, err)
	}
	return m, syncDir(dst)
}
