package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/s3"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestS3Client checks the S3 calls on SeaweedFS where the remote suite
// does not reach: listings over several pages, multipart bodies, an
// upload whose reader fails, odd key names, and refused credentials.
func TestS3Client(t *testing.T) {
	s := testenv.StartS3(t)
	s.MakeBucket(t, "client")
	ctx := context.Background()
	url := s.URL("client", "root")
	creds := s.CredentialsFile(t)
	rem, err := Open(ctx, url, creds, testTimeouts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rem.Close() })
	r := rem.(*s3Remote)

	t.Run("Paging", func(t *testing.T) {
		r.listPage = 7 // a few pages, for the continuation tokens
		defer func() { r.listPage = 0 }()
		var want []string
		for i := range 20 {
			name := fmt.Sprintf("f%02d", i)
			want = append(want, name)
			if err := r.Put(ctx, "paged/"+name, strings.NewReader(name), int64(len(name))); err != nil {
				t.Fatal(err)
			}
		}
		for _, sub := range []string{"sub-a", "sub-b"} {
			want = append(want, sub)
			for i := range 4 {
				if err := r.Put(ctx, fmt.Sprintf("paged/%s/%d", sub, i), strings.NewReader("x"), 1); err != nil {
					t.Fatal(err)
				}
			}
		}
		slices.Sort(want)
		got, err := r.List(ctx, "paged")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list over pages of 7 = %v, want %v", got, want)
		}
		if err := r.DeleteAll(ctx, "paged"); err != nil {
			t.Fatal(err)
		}
		// No key is left. (SeaweedFS keeps the emptied sub-folders as
		// common prefixes, a filer's directories, so List is not the test.)
		page, err := s.Client(t).ListObjectsV2(ctx, "client", s3.ListQuery{Prefix: "root/paged/"})
		if err != nil || len(page.Keys) != 0 {
			t.Fatalf("after DeleteAll the bucket still has %v (%v)", page.Keys, err)
		}
	})

	t.Run("Multipart", func(t *testing.T) {
		for _, size := range []int{s3PartSize, 2*s3PartSize + 12345} {
			data := randomData(size)
			name := fmt.Sprintf("multi/%d", size)
			if err := r.Put(ctx, name, bytes.NewReader(data), int64(size)); err != nil {
				t.Fatal(err)
			}
			if got, err := r.Stat(ctx, name); err != nil || got != int64(size) {
				t.Fatalf("stat %s = %d, %v", name, got, err)
			}
			rc, err := r.Get(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("%s read back %d bytes (%v), not the %d put", name, len(back), err, size)
			}
		}
	})

	t.Run("ReaderFailsMidUpload", func(t *testing.T) {
		const size = 3 * s3PartSize
		broken := errors.New("disk read error")
		body := io.MultiReader(bytes.NewReader(randomData(2*s3PartSize+100)), errReader{broken})
		err := r.Put(ctx, "aborted/file", body, size)
		if !errors.Is(err, broken) {
			t.Fatalf("put with a failing reader = %v, want its error", err)
		}
		if _, err := r.Stat(ctx, "aborted/file"); !errors.Is(err, ErrNotExist) {
			t.Errorf("stat after a failed upload = %v, want ErrNotExist", err)
		}
		uploads, err := s.Client(t).ListMultipartUploads(ctx, "client", "root/aborted/")
		if err != nil {
			t.Fatal(err)
		}
		if len(uploads) != 0 {
			t.Errorf("the failed upload left parts behind: %v", uploads)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		if _, err := r.Stat(ctx, "nothing/here"); !errors.Is(err, ErrNotExist) {
			t.Errorf("stat of a missing name = %v, want ErrNotExist", err)
		}
		if rc, err := r.Get(ctx, "nothing/here"); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "NoSuchKey") {
			if rc != nil {
				rc.Close()
			}
			t.Errorf("get of a missing name = %v, want ErrNotExist naming NoSuchKey", err)
		}
		if names, err := r.List(ctx, "nothing"); err != nil || len(names) != 0 {
			t.Errorf("list of a missing dir = %v, %v", names, err)
		}
		if err := r.DeleteAll(ctx, "nothing"); err != nil {
			t.Errorf("delete of a missing dir: %v", err)
		}
		_, err := Open(ctx, s.URL("no-such-bucket", "x"), creds, testTimeouts)
		if err == nil || !strings.Contains(err.Error(), "bucket no-such-bucket does not exist") {
			t.Errorf("open on a missing bucket = %v", err)
		}
	})

	t.Run("OddNames", func(t *testing.T) {
		names := []string{"a b", "plus+sign", "é-ü", "semi;colon&amp", "tilde~x", "pct%20"}
		for _, n := range names {
			if err := r.Put(ctx, "odd/"+n, strings.NewReader(n), int64(len(n))); err != nil {
				t.Fatal(err)
			}
		}
		got, err := r.List(ctx, "odd")
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Sorted(slices.Values(names))
		if !slices.Equal(got, want) {
			t.Fatalf("list = %q, want %q", got, want)
		}
		for _, n := range names {
			rc, err := r.Get(ctx, "odd/"+n)
			if err != nil {
				t.Fatal(err)
			}
			back, _ := io.ReadAll(rc)
			rc.Close()
			if string(back) != n {
				t.Errorf("get %q = %q", n, back)
			}
		}
		if err := r.DeleteAll(ctx, "odd"); err != nil {
			t.Fatal(err)
		}
		if page, err := s.Client(t).ListObjectsV2(ctx, "client", s3.ListQuery{Prefix: "root/odd/"}); err != nil || len(page.Keys) != 0 {
			t.Fatalf("after DeleteAll the bucket still has %q (%v)", page.Keys, err)
		}
	})

	t.Run("WrongSecretKey", func(t *testing.T) {
		const wrong = "wrong-secret-0123456789abcdefXYZ"
		file := t.TempDir() + "/wrong.env"
		content := "AWS_ACCESS_KEY_ID=" + s.AccessKey + "\nAWS_SECRET_ACCESS_KEY=" + wrong + "\nS3_INSECURE=true\n"
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, url, file, testTimeouts)
		checkRefused(t, "open", err, wrong)
		// A call with a body gets S3's error document, not just a status.
		bad := s3.New(s3.Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: wrong})
		err = bad.PutObject(ctx, "client", "root/refused", []byte("x"))
		checkRefused(t, "put", err, wrong)
		var e *s3.Error
		if !errors.As(err, &e) || e.Code != "SignatureDoesNotMatch" {
			t.Errorf("put with a wrong secret key = %v, want SignatureDoesNotMatch", err)
		}
	})
}

func checkRefused(t *testing.T, what string, err error, secret string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with a wrong secret key succeeded", what)
	}
	msg := err.Error()
	if !strings.Contains(msg, "SignatureDoesNotMatch") && !strings.Contains(msg, "AccessDenied") {
		t.Errorf("%s with a wrong secret key = %v, want SignatureDoesNotMatch or AccessDenied", what, err)
	}
	if strings.Contains(msg, secret) {
		t.Errorf("the error shows the secret key: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
