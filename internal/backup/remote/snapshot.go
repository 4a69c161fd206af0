package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gitopsd/gitopsd/internal/backup/format"
)

// Volume names the folder of one volume's copies: <host>/<stack>/<volume>
// under the remote's prefix.
type Volume struct {
	Host, Stack, Volume string
}

func (v Volume) String() string { return v.Host + "/" + v.Stack + "/" + v.Volume }

// Key names one snapshot copy: <host>/<stack>/<volume>/<id>. The ID is the
// caller's; it must not repeat for the same volume even on a host rebuilt
// with an empty state folder (a time stamp in it does that).
type Key struct {
	Volume
	ID string
}

func (k Key) String() string { return k.Volume.String() + "/" + k.ID }

func (k Key) dir() string { return k.String() }

func (v Volume) check() error {
	for _, p := range []struct{ what, name string }{{"host", v.Host}, {"stack", v.Stack}, {"volume", v.Volume}} {
		if err := checkSegment(p.what, p.name); err != nil {
			return err
		}
	}
	return nil
}

func (k Key) check() error {
	if err := k.Volume.check(); err != nil {
		return err
	}
	return checkSegment("snapshot id", k.ID)
}

// checkSegment keeps every name one folder deep: a "/" or ".." in a stack
// or volume name must not reach into another host's copies.
func checkSegment(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.HasSuffix(name, ".part") {
		return fmt.Errorf("%s %q cannot be a folder name on the remote", what, name)
	}
	return nil
}

// State is what is known of a remote copy, from worst to best.
type State string

const (
	// StatePartial: no commit marker. An upload that is under way, was
	// cut short, or a deletion that was; never used for anything.
	StatePartial State = "partial"
	// StateDamaged: committed, but the manifest cannot be read or the
	// archive is missing or differs from it in size or sha256.
	StateDamaged State = "damaged"
	// StateCommitted: committed, the manifest reads and the archive has
	// its size; its content was not read back by this listing.
	StateCommitted State = "committed"
	// StateVerified: committed, and the archive was read back with the
	// size and sha256 its manifest records. Only this counts as a copy.
	StateVerified State = "verified"
)

// Snapshot is one remote copy as List or Verify found it.
type Snapshot struct {
	Key
	State State
	// Manifest is the copy's manifest, when it could be read.
	Manifest *format.Manifest
	// Problem says why the copy is partial or damaged.
	Problem string
}

// Good reports whether the copy counts: committed and read back intact.
func (s Snapshot) Good() bool { return s.State == StateVerified }

// noMarker is the Problem of a copy whose upload never finished.
const noMarker = "no commit marker (the upload did not finish)"

// Unfinished reports whether the copy is known to be an upload that never
// finished (its marker is missing), not one that could not be read: a
// caller that must tell "no copy" from "a copy it cannot reach" counts only
// these as absent.
func (s Snapshot) Unfinished() bool { return s.State == StatePartial && s.Problem == noMarker }

// Check is how much List reads of each copy.
type Check int

const (
	// CheckSizes reads the marker, the manifest and the archive's size:
	// a few small requests per copy.
	CheckSizes Check = iota
	// CheckHashes also reads every archive back in full and hashes it.
	CheckHashes
)

// Upload copies the committed local snapshot in dir to key, last file
// last: the archive, the manifest, both read back and compared in size and
// sha256 with the local files, and only then the commit marker. A copy
// cut short at any point has no marker and is never taken as good; Upload
// again finishes it. If key is already committed, Upload checks that copy
// instead of writing over it, and fails if it is not this snapshot.
func Upload(ctx context.Context, r Remote, key Key, dir string) (Snapshot, error) {
	if err := key.check(); err != nil {
		return Snapshot{}, fmt.Errorf("upload to %s: %w", r, err)
	}
	fail := func(err error) (Snapshot, error) {
		return Snapshot{}, fmt.Errorf("upload snapshot %s as %s: %w", dir, key, err)
	}
	m, err := format.ReadManifest(dir)
	if err != nil {
		return fail(err)
	}
	manifestSum, err := fileSHA256(filepath.Join(dir, format.ManifestName))
	if err != nil {
		return fail(err)
	}
	if _, err := r.Stat(ctx, path.Join(key.dir(), format.CommittedName)); err == nil {
		return alreadyThere(ctx, r, key, m, manifestSum)
	} else if !errors.Is(err, ErrNotExist) {
		return fail(err)
	}
	archive := archiveName(m)
	for _, name := range []string{archive, format.ManifestName} {
		if err := putFile(ctx, r, path.Join(key.dir(), name), filepath.Join(dir, name)); err != nil {
			return fail(err)
		}
	}
	if err := readBack(ctx, r, path.Join(key.dir(), archive), m.ArchiveSize, m.ArchiveSHA256); err != nil {
		return fail(err)
	}
	if err := readBack(ctx, r, path.Join(key.dir(), format.ManifestName), manifestSum.size, manifestSum.sha256); err != nil {
		return fail(err)
	}
	marker := filepath.Join(dir, format.CommittedName)
	if err := putFile(ctx, r, path.Join(key.dir(), format.CommittedName), marker); err != nil {
		return fail(err)
	}
	markerSum, err := fileSHA256(marker)
	if err != nil {
		return fail(err)
	}
	if err := readBack(ctx, r, path.Join(key.dir(), format.CommittedName), markerSum.size, markerSum.sha256); err != nil {
		return fail(err)
	}
	return Snapshot{Key: key, State: StateVerified, Manifest: &m}, nil
}

// alreadyThere handles an upload retried after its marker was written
// (the answer was lost, or the process died before recording it): the copy
// counts if it is this snapshot and reads back intact.
func alreadyThere(ctx context.Context, r Remote, key Key, local format.Manifest, manifestSum digest) (Snapshot, error) {
	if err := readBack(ctx, r, path.Join(key.dir(), format.ManifestName), manifestSum.size, manifestSum.sha256); err != nil {
		return Snapshot{}, fmt.Errorf("upload to %s: %s is already committed there with another manifest; refusing to write over it: %w", r, key, err)
	}
	s := Verify(ctx, r, key)
	if !s.Good() {
		return s, fmt.Errorf("upload to %s: %s is already committed there but %s: %s (delete it to upload again)", r, key, s.State, s.Problem)
	}
	return s, nil
}

// Verify reads one copy back: marker, manifest, and the archive in full,
// whose size and sha256 must be the manifest's. The result is
// StateVerified or says what is wrong; a network failure is a Problem too,
// with State partial or damaged as far as it got, never verified.
func Verify(ctx context.Context, r Remote, key Key) Snapshot {
	s := inspect(ctx, r, key)
	if s.State != StateCommitted {
		return s
	}
	name := path.Join(key.dir(), archiveName(*s.Manifest))
	if err := readBack(ctx, r, name, s.Manifest.ArchiveSize, s.Manifest.ArchiveSHA256); err != nil {
		s.State, s.Problem = StateDamaged, err.Error()
		return s
	}
	s.State = StateVerified
	return s
}

// List returns the copies of a volume, newest first (by the manifests'
// creation time, then by ID), each with its State as far as check reads.
// Copies that cannot be read are listed with their Problem rather than
// failing the list; an error means the volume's folder could not be listed.
func List(ctx context.Context, r Remote, v Volume, check Check) ([]Snapshot, error) {
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("list %s: %w", r, err)
	}
	names, err := r.List(ctx, v.String())
	if err != nil {
		return nil, fmt.Errorf("list copies of %s: %w", v, err)
	}
	var out []Snapshot
	for _, id := range names {
		if strings.HasSuffix(id, ".part") {
			continue
		}
		key := Key{Volume: v, ID: id}
		var s Snapshot
		if check == CheckHashes {
			s = Verify(ctx, r, key)
		} else {
			s = inspect(ctx, r, key)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list copies of %s: %w", v, err)
		}
		if s.State == StatePartial && isEmpty(ctx, r, key) {
			// A folder left empty by a deletion (some S3 servers keep
			// one) is no copy at all, not even a partial one.
			continue
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := createdAt(out[i]), createdAt(out[j])
		if ti != tj {
			return ti > tj
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func isEmpty(ctx context.Context, r Remote, key Key) bool {
	names, err := r.List(ctx, key.dir())
	return err == nil && len(names) == 0
}

func createdAt(s Snapshot) int64 {
	if s.Manifest == nil {
		return 0
	}
	return s.Manifest.CreatedAt.UnixNano()
}

// Delete removes a copy. The marker goes with the rest in one call; a
// deletion cut short leaves a copy that is damaged or partial, never good.
func Delete(ctx context.Context, r Remote, key Key) error {
	if err := key.check(); err != nil {
		return fmt.Errorf("delete from %s: %w", r, err)
	}
	if err := r.DeleteAll(ctx, key.dir()); err != nil {
		return fmt.Errorf("delete copy %s: %w", key, err)
	}
	return nil
}

// Download copies a remote copy into dir, a folder that must not exist
// yet, as a local snapshot: archive and manifest, the archive checked in
// size and sha256 against the manifest while it streams, and the marker
// last. Anything it wrote is removed when it fails. Checking the entries
// (format.Verify) is the caller's, as for any local snapshot.
func Download(ctx context.Context, r Remote, key Key, dir string) (Snapshot, error) {
	fail := func(err error) (Snapshot, error) {
		return Snapshot{}, fmt.Errorf("download %s into %s: %w", key, dir, err)
	}
	s := inspect(ctx, r, key)
	if s.State != StateCommitted {
		return fail(fmt.Errorf("the copy is %s: %s", s.State, s.Problem))
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fail(err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(dir)
		}
	}()
	for _, name := range []string{archiveName(*s.Manifest), format.ManifestName} {
		want := digest{}
		if name != format.ManifestName {
			want = digest{size: s.Manifest.ArchiveSize, sha256: s.Manifest.ArchiveSHA256}
		}
		if err := getFile(ctx, r, path.Join(key.dir(), name), filepath.Join(dir, name), want); err != nil {
			return fail(err)
		}
	}
	if err := getFile(ctx, r, path.Join(key.dir(), format.CommittedName), filepath.Join(dir, format.CommittedName), digest{}); err != nil {
		return fail(err)
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	done = true
	s.State = StateVerified
	return s, nil
}

// inspect reads a copy's marker, manifest and archive size.
func inspect(ctx context.Context, r Remote, key Key) Snapshot {
	s := Snapshot{Key: key}
	if err := key.check(); err != nil {
		s.State, s.Problem = StateDamaged, err.Error()
		return s
	}
	if _, err := r.Stat(ctx, path.Join(key.dir(), format.CommittedName)); err != nil {
		s.State = StatePartial
		if errors.Is(err, ErrNotExist) {
			s.Problem = noMarker
		} else {
			s.Problem = err.Error()
		}
		return s
	}
	m, err := readManifest(ctx, r, path.Join(key.dir(), format.ManifestName))
	if err != nil {
		s.State, s.Problem = StateDamaged, err.Error()
		return s
	}
	s.Manifest = &m
	name := archiveName(m)
	size, err := r.Stat(ctx, path.Join(key.dir(), name))
	switch {
	case err != nil:
		s.State, s.Problem = StateDamaged, err.Error()
	case size != m.ArchiveSize:
		s.State, s.Problem = StateDamaged, fmt.Sprintf("%s is %d bytes, the manifest says %d", name, size, m.ArchiveSize)
	default:
		s.State = StateCommitted
	}
	return s
}

// maxManifest bounds what is read as a manifest: a million entries.
const maxManifest = 256 << 20

func readManifest(ctx context.Context, r Remote, name string) (format.Manifest, error) {
	rc, err := r.Get(ctx, name)
	if err != nil {
		return format.Manifest{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifest))
	if err != nil {
		return format.Manifest{}, err
	}
	var m format.Manifest
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
		return format.Manifest{}, fmt.Errorf("decode %s: %w", name, err)
	}
	if m.Version != format.Version {
		return format.Manifest{}, fmt.Errorf("%s: manifest format version %d is not supported (this gitopsd reads version %d)", name, m.Version, format.Version)
	}
	if m.EntryCount != len(m.Entries) {
		return format.Manifest{}, fmt.Errorf("%s lists %d entries but says it has %d (cut short or edited?)", name, len(m.Entries), m.EntryCount)
	}
	return m, nil
}

func archiveName(m format.Manifest) string {
	if m.Encrypted {
		return format.EncryptedArchiveName
	}
	return format.ArchiveName
}

type digest struct {
	size   int64
	sha256 string // hex; "" when unknown
}

func fileSHA256(file string) (digest, error) {
	f, err := os.Open(file)
	if err != nil {
		return digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return digest{}, fmt.Errorf("read %s: %w", file, err)
	}
	return digest{size: n, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

func putFile(ctx context.Context, r Remote, name, local string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return r.Put(ctx, name, f, fi.Size())
}

// readBack reads name in full and compares its size and sha256 with what
// was meant to be there: the check that makes a copy count.
func readBack(ctx context.Context, r Remote, name string, size int64, sum string) error {
	rc, err := r.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	return compareDigest(name, digest{size: size, sha256: sum}, digest{size: n, sha256: hex.EncodeToString(h.Sum(nil))})
}

func compareDigest(name string, want, got digest) error {
	if got.size != want.size {
		return &format.Mismatch{Reason: fmt.Sprintf("%s read back as %d bytes, want %d", name, got.size, want.size)}
	}
	if want.sha256 != "" && got.sha256 != want.sha256 {
		return &format.Mismatch{Reason: fmt.Sprintf("%s read back with sha256 %.12s…, want %.12s…", name, got.sha256, want.sha256)}
	}
	return nil
}

// getFile downloads name into local (created, fsynced), checking it
// against want when want has a sha256.
func getFile(ctx context.Context, r Remote, name, local string, want digest) error {
	rc, err := r.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", name, err)
	}
	if want.sha256 != "" {
		return compareDigest(name, want, digest{size: n, sha256: hex.EncodeToString(h.Sum(nil))})
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
