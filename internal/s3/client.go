// Package s3 is the small S3 client gitopsd's remote copies need:
// path-style requests (http(s)://host/bucket/key, which every
// S3-compatible server understands) signed with AWS Signature Version 4,
// for the dozen calls a backup makes. A body is sent from memory, so that
// its sha256 is signed rather than left UNSIGNED-PAYLOAD over plain HTTP;
// the caller bounds the memory by cutting large bodies into multipart
// parts. The client does no retries: the caller backs off between
// attempts and records them.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config says where a Client connects and as whom.
type Config struct {
	Endpoint  string // host or host:port
	Secure    bool   // https rather than plain http
	AccessKey string
	SecretKey string
	Region    string            // us-east-1 when empty
	Transport http.RoundTripper // nil: a copy of http.DefaultTransport
}

// Client sends signed requests to one S3 endpoint. It is safe for
// concurrent use.
type Client struct {
	scheme, host string
	signer       signer
	hc           *http.Client
	secrets      []string // never repeated in an error
}

// New returns a Client for cfg; it makes no request.
func New(cfg Config) *Client {
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Content-Length must be the object's, not a gzipped reply's.
		t.DisableCompression = true
		tr = t
	}
	scheme := "http"
	if cfg.Secure {
		scheme = "https"
	}
	return &Client{
		scheme: scheme, host: cfg.Endpoint,
		signer: signer{accessKey: cfg.AccessKey, secretKey: cfg.SecretKey, region: region},
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A redirect goes to another host, for which the signature
			// is wrong: report it (a bucket in another region) instead.
			return http.ErrUseLastResponse
		}},
		secrets: []string{cfg.SecretKey, cfg.AccessKey},
	}
}

// Error is S3's answer to a call that failed: the code of its XML error
// document, or one derived from the HTTP status for a reply without a body
// (HEAD).
type Error struct {
	Op         string // the S3 call, e.g. PutObject
	StatusCode int
	Code       string // e.g. NoSuchKey, AccessDenied, SignatureDoesNotMatch
	Message    string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (HTTP %d)", e.Op, e.Code, e.StatusCode)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// IsNoSuchKey reports whether err is S3 saying the object does not exist.
func IsNoSuchKey(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == "NoSuchKey" || e.Code == "NotFound")
}

// request is one call: the bucket and key make the path, query the
// (signed) query string.
type request struct {
	op, method  string
	bucket, key string
	query       map[string]string
	header      http.Header
	body        []byte // nil: none
}

// do sends r and returns the reply if its status is a success; the
// caller closes its body. Any other status is an *Error.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	p := "/"
	if r.bucket != "" {
		p += r.bucket + "/" + r.key
	}
	u := &url.URL{Scheme: c.scheme, Host: c.host, Path: p, RawPath: escape(p, true), RawQuery: canonicalQuery(r.query)}
	var body io.Reader
	payload := emptySHA256
	if r.body != nil {
		body = bytes.NewReader(r.body)
		payload = hexSHA256(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.op, err)
	}
	req.URL = u // exactly the escaping that is signed
	for k, v := range r.header {
		req.Header[k] = v
	}
	c.signer.sign(req, payload, time.Now())
	resp, err := c.hc.Do(req)
	if err != nil {
		// The URL the *url.Error repeats is long (an upload ID) and
		// the caller names the object already.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%s: %w", r.op, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, c.errorOf(r, resp)
	}
	return resp, nil
}

// errorOf reads S3's XML error from a failed reply.
func (c *Client) errorOf(r request, resp *http.Response) error {
	e := &Error{Op: r.op, StatusCode: resp.StatusCode}
	if r.method != http.MethodHead {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if doc, err := parseXML(data); err == nil {
			e.Code, e.Message = doc.get("Code"), c.redact(doc.get("Message"))
		}
	}
	if e.Code == "" {
		e.Code = statusCode(resp.StatusCode, r.key)
	}
	if region := resp.Header.Get("X-Amz-Bucket-Region"); region != "" && resp.StatusCode == http.StatusMovedPermanently {
		e.Message = "the bucket is in region " + region
	}
	return e
}

// redact keeps the keys out of a server's message: some servers quote
// the request they refused.
func (c *Client) redact(msg string) string {
	for _, s := range c.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// statusCode names a reply's status as S3 would have, for replies that
// carry no error document.
func statusCode(status int, key string) string {
	switch status {
	case http.StatusNotFound:
		if key != "" {
			return "NoSuchKey"
		}
		return "NoSuchBucket"
	case http.StatusForbidden:
		// HEAD says no more: a wrong key, a wrong secret key, or no
		// permission on the bucket.
		return "AccessDenied"
	case http.StatusMovedPermanently:
		return "PermanentRedirect"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// discard ends a reply whose body is not needed, keeping its connection
// for the next call.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// decode reads a reply's XML document. A 200 reply may still carry an
// error document (CompleteMultipartUpload does when it fails after it
// started answering): that is an *Error.
func (c *Client) decode(op string, resp *http.Response) (*node, error) {
	defer discard(resp)
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: read the reply: %w", op, err)
	}
	doc, err := parseXML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: parse the reply: %w", op, err)
	}
	if doc.name == "Error" {
		return nil, &Error{Op: op, StatusCode: resp.StatusCode, Code: doc.get("Code"), Message: c.redact(doc.get("Message"))}
	}
	return doc, nil
}

// call sends r for its status alone.
func (c *Client) call(ctx context.Context, r request) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	discard(resp)
	return nil
}

// HeadBucket checks that bucket exists and the keys may use it.
func (c *Client) HeadBucket(ctx context.Context, bucket string) error {
	return c.call(ctx, request{op: "HeadBucket", method: http.MethodHead, bucket: bucket})
}

// MakeBucket creates bucket in the endpoint's default region.
func (c *Client) MakeBucket(ctx context.Context, bucket string) error {
	return c.call(ctx, request{op: "CreateBucket", method: http.MethodPut, bucket: bucket})
}

var octetStream = http.Header{"Content-Type": {"application/octet-stream"}}

// PutObject stores body as key in one request.
func (c *Client) PutObject(ctx context.Context, bucket, key string, body []byte) error {
	return c.call(ctx, request{op: "PutObject", method: http.MethodPut, bucket: bucket, key: key, header: octetStream, body: body})
}

// CreateMultipartUpload starts an upload in parts and returns its ID.
func (c *Client) CreateMultipartUpload(ctx context.Context, bucket, key string) (string, error) {
	const op = "CreateMultipartUpload"
	resp, err := c.do(ctx, request{op: op, method: http.MethodPost, bucket: bucket, key: key,
		query: map[string]string{"uploads": ""}, header: octetStream})
	if err != nil {
		return "", err
	}
	doc, err := c.decode(op, resp)
	if err != nil {
		return "", err
	}
	id := doc.get("UploadId")
	if id == "" {
		return "", fmt.Errorf("%s: the reply has no UploadId", op)
	}
	return id, nil
}

// UploadPart sends part number n (from 1) of an upload and returns its
// ETag, which CompleteMultipartUpload needs.
func (c *Client) UploadPart(ctx context.Context, bucket, key, uploadID string, n int, body []byte) (string, error) {
	resp, err := c.do(ctx, request{op: "UploadPart " + strconv.Itoa(n), method: http.MethodPut, bucket: bucket, key: key,
		query: map[string]string{"partNumber": strconv.Itoa(n), "uploadId": uploadID}, body: body})
	if err != nil {
		return "", err
	}
	discard(resp)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		return "", fmt.Errorf("UploadPart %d: the reply has no ETag", n)
	}
	return etag, nil
}

// CompleteMultipartUpload joins the parts, whose ETags are in part
// order, into the object.
func (c *Client) CompleteMultipartUpload(ctx context.Context, bucket, key, uploadID string, etags []string) error {
	const op = "CompleteMultipartUpload"
	var doc strings.Builder
	doc.WriteString("<CompleteMultipartUpload>")
	for i, etag := range etags {
		fmt.Fprintf(&doc, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i+1, escapeText(etag))
	}
	doc.WriteString("</CompleteMultipartUpload>")
	body := []byte(doc.String())
	resp, err := c.do(ctx, request{op: op, method: http.MethodPost, bucket: bucket, key: key,
		query: map[string]string{"uploadId": uploadID}, header: http.Header{"Content-Type": {"application/xml"}}, body: body})
	if err != nil {
		return err
	}
	_, err = c.decode(op, resp)
	return err
}

// AbortMultipartUpload drops an upload and the parts it stored.
func (c *Client) AbortMultipartUpload(ctx context.Context, bucket, key, uploadID string) error {
	return c.call(ctx, request{op: "AbortMultipartUpload", method: http.MethodDelete, bucket: bucket, key: key,
		query: map[string]string{"uploadId": uploadID}})
}

// ListMultipartUploads returns the keys of the uploads under prefix that
// were started and neither completed nor aborted (the first 1000).
func (c *Client) ListMultipartUploads(ctx context.Context, bucket, prefix string) ([]string, error) {
	const op = "ListMultipartUploads"
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, bucket: bucket,
		query: map[string]string{"uploads": "", "prefix": prefix}})
	if err != nil {
		return nil, err
	}
	doc, err := c.decode(op, resp)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, u := range doc.all("Upload") {
		keys = append(keys, u.get("Key"))
	}
	return keys, nil
}

// GetObject opens key for reading and returns its size; the caller
// closes the reader. A missing key is an error here, not at the first
// Read (IsNoSuchKey).
func (c *Client) GetObject(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, request{op: "GetObject", method: http.MethodGet, bucket: bucket, key: key})
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// HeadObject returns the size of key.
func (c *Client) HeadObject(ctx context.Context, bucket, key string) (int64, error) {
	resp, err := c.do(ctx, request{op: "HeadObject", method: http.MethodHead, bucket: bucket, key: key})
	if err != nil {
		return 0, err
	}
	discard(resp)
	if resp.ContentLength < 0 {
		return 0, errors.New("HeadObject: the reply has no Content-Length")
	}
	return resp.ContentLength, nil
}

// ListQuery is one page's request of ListObjectsV2.
type ListQuery struct {
	Prefix            string
	Delimiter         string // "/": names under Prefix/ that hold more come as Prefixes
	ContinuationToken string // from the previous page
	MaxKeys           int    // 0: the server's (1000)
}

// ListPage is one page of a listing: the keys, the common prefixes
// (ending in the delimiter), and the token of the next page, "" after the
// last.
type ListPage struct {
	Keys     []string
	Prefixes []string
	Next     string
}

// ListObjectsV2 lists one page of the keys of bucket.
func (c *Client) ListObjectsV2(ctx context.Context, bucket string, q ListQuery) (ListPage, error) {
	const op = "ListObjectsV2"
	query := map[string]string{"list-type": "2", "prefix": q.Prefix}
	if q.Delimiter != "" {
		query["delimiter"] = q.Delimiter
	}
	if q.ContinuationToken != "" {
		query["continuation-token"] = q.ContinuationToken
	}
	if q.MaxKeys > 0 {
		query["max-keys"] = strconv.Itoa(q.MaxKeys)
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, bucket: bucket, query: query})
	if err != nil {
		return ListPage{}, err
	}
	doc, err := c.decode(op, resp)
	if err != nil {
		return ListPage{}, err
	}
	var page ListPage
	for _, o := range doc.all("Contents") {
		page.Keys = append(page.Keys, o.get("Key"))
	}
	for _, p := range doc.all("CommonPrefixes") {
		page.Prefixes = append(page.Prefixes, p.get("Prefix"))
	}
	if strings.TrimSpace(doc.get("IsTruncated")) == "true" {
		page.Next = doc.get("NextContinuationToken")
		if page.Next == "" {
			return ListPage{}, fmt.Errorf("%s: a truncated page without NextContinuationToken", op)
		}
	}
	return page, nil
}

// MaxDeleteKeys is how many keys one DeleteObjects call takes.
const MaxDeleteKeys = 1000

// DeleteObjects deletes up to MaxDeleteKeys keys in one call; a key
// that does not exist is not an error. What S3 could not delete comes
// back as one error naming each key.
func (c *Client) DeleteObjects(ctx context.Context, bucket string, keys []string) error {
	const op = "DeleteObjects"
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > MaxDeleteKeys {
		return fmt.Errorf("%s: %d keys, at most %d a call", op, len(keys), MaxDeleteKeys)
	}
	var doc strings.Builder
	doc.WriteString("<Delete><Quiet>true</Quiet>")
	for _, k := range keys {
		doc.WriteString("<Object><Key>" + escapeText(k) + "</Key></Object>")
	}
	doc.WriteString("</Delete>")
	body := []byte(doc.String())
	sum := md5.Sum(body)
	header := http.Header{
		"Content-Type": {"application/xml"},
		// S3 refuses a batch delete without it.
		"Content-Md5": {base64.StdEncoding.EncodeToString(sum[:])},
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodPost, bucket: bucket,
		query: map[string]string{"delete": ""}, header: header, body: body})
	if err != nil {
		return err
	}
	result, err := c.decode(op, resp)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range result.all("Error") {
		errs = append(errs, fmt.Errorf("%s: %w", e.get("Key"), &Error{Op: op, StatusCode: resp.StatusCode, Code: e.get("Code"), Message: c.redact(e.get("Message"))}))
	}
	return errors.Join(errs...)
}
