package source

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Auth is how to authenticate to the remote.
type Auth struct {
	SSHKey     string // path of a private key for ssh:// and scp-like URLs
	KnownHosts string // path of a known_hosts file; required with SSH
	TokenFile  string // path of a file holding an HTTPS token
}

// Options configure a Source.
type Options struct {
	URL    string // https, ssh, scp-like, file://, or a local path
	Branch string
	Auth   Auth
	Dir    string // working folder under state_dir: holds the mirror and checkouts
	Keep   int    // checkouts to keep besides the pinned ones (default 5)
	// A checkout leaves out files over MaxFileBytes and, while the rest
	// is over MaxCheckoutBytes, the biggest ones (see LeftOut). Zero
	// means DefaultMaxFileBytes, DefaultMaxCheckoutBytes.
	MaxFileBytes     int64
	MaxCheckoutBytes int64
	Log              *slog.Logger // where repaired checkouts are reported (nil: nowhere)
	// Timeout bounds one fetch, clone included (default DefaultTimeout): a
	// server that accepts the connection and never answers must not hold
	// the mirror, and what waits on it, forever.
	Timeout time.Duration
}

// DefaultTimeout is how long a fetch may take when Options.Timeout is zero.
const DefaultTimeout = time.Minute

// Revision is one commit of the branch.
type Revision struct {
	SHA     string
	Message string // first line
	Author  string
	Time    time.Time
}

// DefaultKeep is how many unpinned checkouts Prune leaves when Options.Keep
// is zero: enough for a few rollbacks without growing without bound.
const DefaultKeep = 5

const (
	remoteName     = "origin"
	mirrorName     = "mirror"
	mirrorTmp      = ".mirror-tmp-"
	checkoutsName  = "checkouts"
	checkoutTmp    = ".tmp-"
	tokenUsername  = "gitopsd" // servers that take a token as basic-auth password ignore the user, but it must not be empty
	defaultSSHUser = "git"
)

// Source is a local mirror of one branch of a Git repository.
type Source struct {
	opts Options

	ep       *transport.Endpoint
	fetchURL string   // what go-git dials: opts.URL, with a local path made absolute
	secrets  []string // credentials inside opts.URL, scrubbed from every error

	// mu serialises everything that touches the mirror or the checkouts:
	// go-git's file storage is not safe for concurrent writers, and Prune
	// must not see an export in progress as a stale temporary folder.
	mu        sync.Mutex
	repo      *git.Repository
	objects   cache.Object // repo's cache of decoded objects, emptied at unlock
	sweptTemp bool
	descends  *descendVerdict // the last CheckDescends verdict
	// verified are the checkouts this process exported or compared with
	// their tree; leftOut, by revision, the files they left out.
	verified map[string]bool
	leftOut  map[string]*LimitError
}

// New prepares a Source; it does no network I/O.
func New(opts Options) (*Source, error) {
	if strings.TrimSpace(opts.URL) == "" {
		return nil, errors.New("source.url is required")
	}
	opts.Branch = strings.TrimPrefix(strings.TrimSpace(opts.Branch), "refs/heads/")
	if opts.Branch == "" {
		return nil, errors.New("source.branch is required")
	}
	if err := plumbing.NewBranchReferenceName(opts.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("source.branch %q is not a valid branch name", opts.Branch)
	}
	if opts.Dir == "" {
		return nil, errors.New("source: working folder (Dir) is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("source: working folder %s: %w", opts.Dir, err)
	}
	opts.Dir = dir
	if opts.Keep < 0 {
		return nil, fmt.Errorf("source: keep must not be negative, got %d", opts.Keep)
	}
	if opts.Keep == 0 {
		opts.Keep = DefaultKeep
	}
	if opts.MaxFileBytes < 0 || opts.MaxCheckoutBytes < 0 {
		return nil, errors.New("source: size limits must not be negative")
	}
	if opts.MaxFileBytes == 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.MaxCheckoutBytes == 0 {
		opts.MaxCheckoutBytes = DefaultMaxCheckoutBytes
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("source: timeout must not be negative, got %s", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}

	s := &Source{opts: opts, secrets: urlSecrets(opts.URL)}
	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, scrub(fmt.Errorf("source.url %s: %w", Redact(opts.URL), err), s.secrets)
	}
	s.ep = ep
	switch ep.Protocol {
	case "file":
		// A local path is resolved now, against the folder gitopsd was
		// started in, so it cannot change meaning later.
		s.fetchURL = opts.URL
		if !strings.HasPrefix(opts.URL, "file://") {
			s.fetchURL = ep.Path
		}
	case "http", "https":
		s.fetchURL = opts.URL
	case "ssh":
		if opts.Auth.KnownHosts == "" {
			return nil, errors.New("source.auth.known_hosts is required for SSH (host keys are never skipped)")
		}
		s.fetchURL = opts.URL
	default:
		return nil, fmt.Errorf("source.url %s: unsupported scheme %q (use https, ssh, scp-like, file:// or a local path)", Redact(opts.URL), ep.Protocol)
	}
	return s, nil
}

// Fetch clones on first use, then fetches, and returns the branch's head.
// It gives up after Options.Timeout.
func (s *Source) Fetch(ctx context.Context) (Revision, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.Timeout, errFetchTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.unlock()
	auth, token, err := s.auth()
	if err != nil {
		return Revision{}, s.fetchError(err, "")
	}
	rev, err := s.fetch(ctx, auth)
	if err != nil {
		if errors.Is(context.Cause(ctx), errFetchTimeout) {
			// go-git says "context deadline exceeded" or a read error;
			// the operator needs to know it was the server's silence.
			err = fmt.Errorf("no answer within %s (source.timeout): %w", s.opts.Timeout, err)
		}
		return Revision{}, s.fetchError(err, token)
	}
	return rev, nil
}

// errFetchTimeout is the cause of a fetch's context that ran out of time.
var errFetchTimeout = errors.New("timed out")

func (s *Source) fetchError(err error, token string) error {
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		switch {
		case token != "":
			err = fmt.Errorf("%w (the token in %s was rejected)", err, s.opts.Auth.TokenFile)
		case s.ep.User != "":
			err = fmt.Errorf("%w (the credentials in source.url were rejected)", err)
		default:
			err = fmt.Errorf("%w (no credentials: set source.auth.token_file)", err)
		}
	}
	if s.ep.Protocol == "file" && errors.Is(err, exec.ErrNotFound) {
		// go-git reads a local repository by running git-upload-pack.
		err = fmt.Errorf("%w (a local or file:// source needs git installed)", err)
	}
	secrets := s.secrets
	if token != "" {
		secrets = append(append([]string(nil), secrets...), token)
	}
	return scrub(fmt.Errorf("fetch %s: %w", Redact(s.opts.URL), err), secrets)
}

func (s *Source) fetch(ctx context.Context, auth transport.AuthMethod) (Revision, error) {
	if err := os.MkdirAll(s.opts.Dir, 0o750); err != nil {
		return Revision{}, fmt.Errorf("create working folder: %w", err)
	}
	if !s.sweptTemp {
		// Left by a clone that a crash cut off; nothing else writes them.
		if err := removeGlob(filepath.Join(s.opts.Dir, mirrorTmp+"*")); err != nil {
			return Revision{}, err
		}
		s.sweptTemp = true
	}
	repo, err := s.open()
	switch {
	case errors.Is(err, git.ErrRepositoryNotExists):
		if repo, err = s.clone(ctx, auth); err != nil {
			return Revision{}, err
		}
	case err != nil:
		return Revision{}, err
	default:
		if err := s.configure(repo); err != nil {
			return Revision{}, err
		}
		if err := s.fetchInto(ctx, repo, auth); err != nil {
			return Revision{}, err
		}
	}
	ref, err := repo.Reference(s.branchRef(), true)
	if err != nil {
		return Revision{}, fmt.Errorf("read branch %q in the mirror: %w", s.opts.Branch, err)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return Revision{}, fmt.Errorf("read head %s of branch %q: %w", ref.Hash(), s.opts.Branch, err)
	}
	return revisionOf(c), nil
}

// clone builds the mirror under a temporary name and renames it into place,
// so a crash mid-clone never leaves a mirror that looks complete.
func (s *Source) clone(ctx context.Context, auth transport.AuthMethod) (*git.Repository, error) {
	tmp, err := os.MkdirTemp(s.opts.Dir, mirrorTmp)
	if err != nil {
		return nil, fmt.Errorf("create mirror: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	repo, err := git.PlainInit(tmp, true)
	if err != nil {
		return nil, fmt.Errorf("create mirror: %w", err)
	}
	if err := s.configure(repo); err != nil {
		return nil, err
	}
	if err := s.fetchInto(ctx, repo, auth); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, s.mirrorDir()); err != nil {
		return nil, fmt.Errorf("create mirror: %w", err)
	}
	done = true
	s.repo = nil
	return s.open()
}

// configure records the remote in the mirror's config, updating it when the
// URL or branch changed since the mirror was made, and points HEAD at the
// branch so plain git commands in the mirror show what gitopsd sees.
func (s *Source) configure(repo *git.Repository) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("read mirror config: %w", err)
	}
	// Credentials stay out of the mirror's config: the URL with them is
	// passed to each fetch instead.
	want := &config.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{Redact(s.fetchURL)},
		Fetch: []config.RefSpec{s.refSpec()},
	}
	if have, ok := cfg.Remotes[remoteName]; !ok || !slices.Equal(have.URLs, want.URLs) || !slices.Equal(have.Fetch, want.Fetch) {
		cfg.Remotes[remoteName] = want
		if err := repo.Storer.SetConfig(cfg); err != nil {
			return fmt.Errorf("update mirror remote: %w", err)
		}
	}
	head := plumbing.NewSymbolicReference(plumbing.HEAD, s.branchRef())
	if cur, err := repo.Storer.Reference(plumbing.HEAD); err != nil || cur.Target() != head.Target() {
		if err := repo.Storer.SetReference(head); err != nil {
			return fmt.Errorf("point mirror HEAD at %s: %w", s.opts.Branch, err)
		}
	}
	return nil
}

func (s *Source) fetchInto(ctx context.Context, repo *git.Repository, auth transport.AuthMethod) error {
	err := repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RemoteURL:  s.fetchURL,
		RefSpecs:   []config.RefSpec{s.refSpec()},
		Auth:       auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case errors.Is(err, git.NoMatchingRefSpecError{}):
		return fmt.Errorf("branch %q not found", s.opts.Branch)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("branch %q not found: the repository is empty", s.opts.Branch)
	}
	return err
}

// Prune removes checkouts other than keep and the newest Options.Keep, and
// packs the mirror's packfiles into one when they are too many (packs.go).
func (s *Source) Prune(keep ...string) error {
	s.mu.Lock()
	defer s.unlock()
	return errors.Join(s.pruneCheckouts(keep), s.consolidatePacks())
}

func (s *Source) pruneCheckouts(keep []string) error {
	root := filepath.Join(s.opts.Dir, checkoutsName)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune checkouts: %w", err)
	}
	pinned := map[string]bool{}
	for _, k := range keep {
		if k != "" {
			pinned[strings.ToLower(k)] = true
		}
	}
	type checkout struct {
		name string
		mod  time.Time
	}
	var (
		candidates []checkout
		errs       []error
	)
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, checkoutTmp):
			// Holding mu means no export is in progress: this one was cut off.
			if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
				errs = append(errs, err)
			}
		case isFullSHA(name) && !pinned[name]:
			info, err := e.Info()
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			candidates = append(candidates, checkout{name, info.ModTime()})
		}
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].mod.After(candidates[j].mod) })
	for i, c := range candidates {
		if i < s.opts.Keep {
			continue
		}
		delete(s.verified, c.name)
		delete(s.leftOut, c.name)
		if err := os.RemoveAll(filepath.Join(root, c.name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune checkouts: %w", err)
	}
	return nil
}

// Lookup returns a revision known to the mirror (a full or abbreviated SHA).
func (s *Source) Lookup(ctx context.Context, rev string) (Revision, error) {
	if err := ctx.Err(); err != nil {
		return Revision{}, err
	}
	s.mu.Lock()
	defer s.unlock()
	repo, err := s.open()
	if err != nil {
		return Revision{}, fmt.Errorf("look up revision %s: %w", rev, err)
	}
	c, err := resolve(repo, rev)
	if err != nil {
		return Revision{}, err
	}
	return revisionOf(c), nil
}

// Verify checks that the commit rev names is signed by one of signers
// (see Signers.VerifyCommit): errors.Is ErrUnsigned or ErrUntrusted when
// it is not.
func (s *Source) Verify(ctx context.Context, rev string, signers *Signers) (Signature, error) {
	if err := ctx.Err(); err != nil {
		return Signature{}, err
	}
	s.mu.Lock()
	defer s.unlock()
	repo, err := s.open()
	if err != nil {
		return Signature{}, fmt.Errorf("verify revision %s: %w", rev, err)
	}
	c, err := resolve(repo, rev)
	if err != nil {
		return Signature{}, err
	}
	return signers.VerifyCommit(c)
}

// resolve finds the commit a full or abbreviated SHA names. Unlike go-git's
// ResolveRevision it takes no ref names (a branch called "deadbeef" must not
// shadow a commit) and reports an ambiguous prefix instead of picking one.
func resolve(repo *git.Repository, rev string) (*object.Commit, error) {
	rev = strings.ToLower(strings.TrimSpace(rev))
	if len(rev) < 4 || len(rev) > 40 || !isHex(rev) {
		return nil, fmt.Errorf("revision %q is not a commit SHA (4 to 40 hex digits)", rev)
	}
	if len(rev) == 40 {
		c, err := repo.CommitObject(plumbing.NewHash(rev))
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("revision %s not found", rev)
		}
		if err != nil {
			return nil, fmt.Errorf("read revision %s: %w", rev, err)
		}
		return c, nil
	}
	prefixer, ok := repo.Storer.(interface {
		HashesWithPrefix(prefix []byte) ([]plumbing.Hash, error)
	})
	if !ok {
		return nil, fmt.Errorf("revision %s: abbreviated SHAs are not supported by this storage", rev)
	}
	prefix, err := hex.DecodeString(rev[:len(rev)&^1])
	if err != nil {
		return nil, fmt.Errorf("revision %q is not a commit SHA", rev)
	}
	hashes, err := prefixer.HashesWithPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("look up revision %s: %w", rev, err)
	}
	var found []*object.Commit
	for _, h := range hashes {
		if !strings.HasPrefix(h.String(), rev) {
			continue
		}
		if c, err := repo.CommitObject(h); err == nil {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("revision %s not found", rev)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("revision %s is ambiguous: %d commits start with it", rev, len(found))
}

// open returns the mirror, or git.ErrRepositoryNotExists before the first
// successful Fetch.
//
// Its packfiles stay open while s.mu is held (unlock closes them): go-git
// otherwise opens and closes a packfile for every object it reads, which
// is most of an export's time. The storage lives as long as the Source, so
// the index of every packfile is read once and a fetch adds the index of
// the packfile it writes: a storage made for each checkout read the index
// of every packfile again, one per fetch that brought objects, so each
// checkout cost more than the last.
func (s *Source) open() (*git.Repository, error) {
	if s.repo != nil {
		return s.repo, nil
	}
	plain, err := git.PlainOpen(s.mirrorDir())
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("no mirror yet (nothing fetched): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror: %w", err)
	}
	repo := plain
	if fs, ok := plain.Storer.(*filesystem.Storage); ok {
		s.objects = cache.NewObjectLRUDefault()
		st := filesystem.NewStorageWithOptions(fs.Filesystem(), s.objects, filesystem.Options{KeepDescriptors: true})
		if repo, err = git.Open(st, nil); err != nil {
			return nil, fmt.Errorf("open mirror: %w", err)
		}
	}
	s.repo = repo
	return repo, nil
}

// unlock closes the packfiles the mirror opened while s.mu was held, so a
// long-lived mirror holds no descriptors between operations, empties the
// cache of objects read (up to 96 MiB of a checkout's blobs, which an idle
// daemon would otherwise keep), and releases s.mu. The indexes stay in
// memory.
func (s *Source) unlock() {
	if s.repo != nil {
		if st, ok := s.repo.Storer.(*filesystem.Storage); ok {
			_ = st.Close() // read-only descriptors: nothing to lose
		}
	}
	if s.objects != nil {
		s.objects.Clear()
	}
	s.mu.Unlock()
}

// LocalPath is the repository's folder when the URL is a local path or
// file:// URL, so the daemon can watch it.
func (s *Source) LocalPath() (string, bool) {
	if s.ep == nil || s.ep.Protocol != "file" {
		return "", false
	}
	return filepath.Clean(s.ep.Path), true
}

// Jitter spreads d by up to ±10% so a fleet does not poll in step.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	spread := int64(d / 10)
	if spread == 0 {
		return d
	}
	j := d + time.Duration(rand.Int64N(2*spread+1)-spread)
	if j < 0 {
		return 0
	}
	return j
}

func (s *Source) mirrorDir() string { return filepath.Join(s.opts.Dir, mirrorName) }

func (s *Source) branchRef() plumbing.ReferenceName {
	return plumbing.NewBranchReferenceName(s.opts.Branch)
}

func (s *Source) refSpec() config.RefSpec {
	b := s.branchRef()
	return config.RefSpec("+" + b + ":" + b)
}

func revisionOf(c *object.Commit) Revision {
	msg, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Revision{
		SHA:     c.Hash.String(),
		Message: strings.TrimSpace(msg),
		Author:  c.Author.Name,
		Time:    c.Committer.When,
	}
}

func removeGlob(pattern string) error {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("clean up %s: %w", pattern, err)
	}
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return fmt.Errorf("clean up %s: %w", m, err)
		}
	}
	return nil
}

func isFullSHA(s string) bool { return len(s) == 40 && isHex(s) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
