package s3

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSignAWSExamples signs the examples of AWS's "Signature Calculations
// for the Authorization Header" page (S3 API reference) and compares with
// the signatures published there.
func TestSignAWSExamples(t *testing.T) {
	s := signer{accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1"}
	when := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	const scope = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
	cases := []struct {
		name, method, path string
		query              map[string]string
		header             http.Header
		body               string
		want               string
	}{
		{
			name: "GetObject", method: "GET", path: "/test.txt",
			header: http.Header{"Range": {"bytes=0-9"}},
			want:   scope + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
		},
		{
			name: "PutObject", method: "PUT", path: "/test$file.text",
			header: http.Header{"Date": {"Fri, 24 May 2013 00:00:00 GMT"}, "X-Amz-Storage-Class": {"REDUCED_REDUNDANCY"}},
			body:   "Welcome to Amazon S3.",
			want:   scope + "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
		},
		{
			name: "GetBucketLifecycle", method: "GET", path: "/",
			query: map[string]string{"lifecycle": ""},
			want:  scope + "SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
		},
		{
			name: "ListObjects", method: "GET", path: "/",
			query: map[string]string{"prefix": "J", "max-keys": "2"},
			want:  scope + "SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &url.URL{Scheme: "https", Host: "examplebucket.s3.amazonaws.com", Path: c.path, RawPath: escape(c.path, true), RawQuery: canonicalQuery(c.query)}
			req, err := http.NewRequest(c.method, u.String(), strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.URL = u
			for k, v := range c.header {
				req.Header[k] = v
			}
			payload := emptySHA256
			if c.body != "" {
				payload = hexSHA256([]byte(c.body))
			}
			s.sign(req, payload, when)
			if got := req.Header.Get("Authorization"); got != c.want {
				t.Errorf("Authorization:\n got %s\nwant %s", got, c.want)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20130524T000000Z" {
				t.Errorf("x-amz-date = %s", got)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"a/b c+d":    "a%2Fb%20c%2Bd",
		"~-._AZaz09": "~-._AZaz09",
		"é":          "%C3%A9",
	} {
		if got := escape(in, false); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := escape("/bucket/a b/c", true); got != "/bucket/a%20b/c" {
		t.Errorf("path escape = %q", got)
	}
	// Sorted by name, not by "name=value": "a-b" sorts before "a" would
	// be wrong.
	if got := canonicalQuery(map[string]string{"a-b": "2", "a": "1", "uploads": "", "c": "x y"}); got != "a=1&a-b=2&c=x%20y&uploads=" {
		t.Errorf("canonicalQuery = %q", got)
	}
}
