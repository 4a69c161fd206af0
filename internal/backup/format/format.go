// Package format owns the on-disk form of a volume snapshot, so that
// writing, reading and checking one agree on every byte, and so that a
// snapshot stays restorable by hand when gitopsd itself is gone.
//
// A snapshot is one directory holding:
//
//	data.tar.zst      the volume's tar stream exactly as the engine produced it, zstd-compressed
//	data.tar.zst.age  instead of data.tar.zst when the snapshot is encrypted to age recipients:
//	                  the same zstd stream, encrypted with age
//	manifest.json     every entry of the tar (path, type, mode, owner, size, link target, and
//	                  the sha256 of every file) and the size and sha256 of the archive file
//	COMMITTED         the commit marker, written last
//
// Plain tools restore a snapshot without gitopsd, as root so that owners
// and setuid bits come back:
//
//	zstd -d -c data.tar.zst | tar -x --numeric-owner -p -C /restore
//	age -d -i key.txt data.tar.zst.age | zstd -d | tar -x --numeric-owner -p -C /restore
//
// The entries sit under the base name of the directory the engine read
// (Docker's archive endpoint names them "data/", "data/a.txt" for a
// directory /data), so the volume's contents land in /restore/data. And
// `jq .entries manifest.json` lists what should come out; its modes are
// octal strings ("04755") because that is how people read them.
//
// The commit marker is the one guarantee a reader relies on: it is written
// only after the archive and the manifest were written in full and fsynced
// along with the directory, so a directory without it is a snapshot cut
// short (a crash, a full disk, a cancelled job) and is never taken as good:
// Open, Verify and ReadManifest refuse it, and Committed says so.
package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Version is the manifest format this package writes and the only one it
// reads; a reader seeing another refuses rather than guess at the meaning.
const Version = 1

// File names inside a snapshot directory. They are part of the format: the
// plain-tools restore in the package documentation names them.
const (
	ArchiveName          = "data.tar.zst"
	EncryptedArchiveName = "data.tar.zst.age"
	ManifestName         = "manifest.json"
	CommittedName        = "COMMITTED"
)

// ErrNotCommitted is returned (wrapped) for a snapshot directory without
// the commit marker, so callers can tell a half-written snapshot from a
// damaged one.
var ErrNotCommitted = errors.New("the snapshot has no commit marker (it was never finished)")

// EntryType is the kind of a tar entry as far as restoring it matters.
// Character and block devices, fifos and the like are rare in volumes and
// are all "other": their type, mode and owner are checked, nothing more.
type EntryType string

// Entry types.
const (
	TypeFile     EntryType = "file"
	TypeDir      EntryType = "dir"
	TypeSymlink  EntryType = "symlink"
	TypeHardlink EntryType = "hardlink"
	TypeOther    EntryType = "other"
)

// Entry is one entry of a snapshot's tar stream, with what a restore must
// reproduce. Modification times are left out on purpose: a restore cannot
// be told apart from the original by them reliably, and a check that fails
// on them would fail every time.
type Entry struct {
	// Path is the name in the tar header, cleaned ("data/" becomes
	// "data"), so that the same tree written by different tools compares
	// equal.
	Path string    `json:"path"`
	Type EntryType `json:"type"`
	// Mode holds the permission bits and setuid, setgid and sticky
	// (0o7777), the part of a mode a tar carries and a restore sets.
	Mode uint32 `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	// Size is the content length of a file (or of an "other" entry that
	// has content); zero for directories and links.
	Size int64 `json:"size"`
	// Link is a symlink's target as written, or the cleaned path of the
	// entry a hardlink points at.
	Link string `json:"link,omitempty"`
	// SHA256 is the hex digest of a file's content; empty for other types.
	SHA256 string `json:"sha256,omitempty"`
}

// entryJSON is Entry as written to manifest.json; it differs only in the
// mode, kept in octal so that a person reading the manifest sees 0755 and
// not 493.
type entryJSON struct {
	Path   string    `json:"path"`
	Type   EntryType `json:"type"`
	Mode   string    `json:"mode"`
	UID    int       `json:"uid"`
	GID    int       `json:"gid"`
	Size   int64     `json:"size"`
	Link   string    `json:"link,omitempty"`
	SHA256 string    `json:"sha256,omitempty"`
}

// MarshalJSON writes the mode as an octal string (see entryJSON).
func (e Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(entryJSON{
		Path: e.Path, Type: e.Type, Mode: octal(e.Mode),
		UID: e.UID, GID: e.GID, Size: e.Size, Link: e.Link, SHA256: e.SHA256,
	})
}

// octal writes a mode as chmod takes it: "0644", "04755", "01777".
func octal(mode uint32) string { return fmt.Sprintf("%#04o", mode) }

// UnmarshalJSON reads the octal mode MarshalJSON writes.
func (e *Entry) UnmarshalJSON(data []byte) error {
	var j entryJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	mode, err := strconv.ParseUint(j.Mode, 8, 32)
	if err != nil {
		return fmt.Errorf("entry %s: mode %q is not an octal number", j.Path, j.Mode)
	}
	*e = Entry{Path: j.Path, Type: j.Type, Mode: uint32(mode), UID: j.UID, GID: j.GID, Size: j.Size, Link: j.Link, SHA256: j.SHA256}
	return nil
}

// Manifest describes a snapshot: enough to check the archive without
// trusting it, and to check a restore against what was snapshotted.
type Manifest struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Encrypted bool      `json:"encrypted"`
	// EntryCount repeats len(Entries) so that a manifest cut short, or
	// edited by hand, is caught before it is believed.
	EntryCount int `json:"entry_count"`
	// Files counts the regular files, Bytes their content: what a person
	// means by "how much was backed up".
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// ArchiveSize and ArchiveSHA256 describe the archive file as stored
	// (compressed, and encrypted when Encrypted), so bit rot is found
	// without decrypting.
	ArchiveSize   int64   `json:"archive_size"`
	ArchiveSHA256 string  `json:"archive_sha256"`
	Entries       []Entry `json:"entries,omitempty"`
}

// archiveName is the archive file of a snapshot; the name says whether age
// is needed to read it.
func archiveName(encrypted bool) string {
	if encrypted {
		return EncryptedArchiveName
	}
	return ArchiveName
}

// checkTotals catches a manifest whose summary disagrees with its entries,
// which would make the counts reported for a snapshot lie.
func (m *Manifest) checkTotals() error {
	files, bytes := 0, int64(0)
	for _, e := range m.Entries {
		if e.Type == TypeFile {
			files++
			bytes += e.Size
		}
	}
	if m.EntryCount != len(m.Entries) || m.Files != files || m.Bytes != bytes {
		return &Mismatch{Reason: fmt.Sprintf("manifest totals differ from its entries (entry_count %d, files %d, bytes %d; the entries add up to %d, %d, %d)",
			m.EntryCount, m.Files, m.Bytes, len(m.Entries), files, bytes)}
	}
	return nil
}

// Committed reports whether dir holds a finished snapshot. It looks at the
// marker only; Verify is what says the contents are intact.
func Committed(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, CommittedName))
	return err == nil && fi.Mode().IsRegular()
}

// ReadManifest reads the manifest of a committed snapshot. A snapshot
// without the commit marker is refused: its manifest may describe an
// archive that was never completed.
func ReadManifest(dir string) (Manifest, error) {
	m, err := readManifest(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest of snapshot %s: %w", dir, err)
	}
	return m, nil
}

func readManifest(dir string) (Manifest, error) {
	if !Committed(dir) {
		return Manifest{}, ErrNotCommitted
	}
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	var m Manifest
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("decode %s: %w", ManifestName, err)
	}
	if m.Version != Version {
		return Manifest{}, fmt.Errorf("manifest format version %d is not supported (this gitopsd reads version %d)", m.Version, Version)
	}
	if m.EntryCount != len(m.Entries) {
		return Manifest{}, fmt.Errorf("%s lists %d entries but says it has %d (cut short or edited?)", ManifestName, len(m.Entries), m.EntryCount)
	}
	return m, nil
}
