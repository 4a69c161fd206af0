package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"
)

// emptySHA256 is the payload hash of a request without a body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signer signs requests with AWS Signature Version 4 in the Authorization
// header, for the service s3.
type signer struct {
	accessKey, secretKey, region string
}

// sign adds x-amz-date, x-amz-content-sha256 and Authorization to req,
// signing its host and every header it carries at this point. The
// transport's own headers (User-Agent, Accept-Encoding, Content-Length)
// are added later and so stay unsigned, which S3 allows. req.URL's path
// and query must already be in their canonical, escaped form
// (escapePath, canonicalQuery): what is signed is what is sent.
func (s signer) sign(req *http.Request, payloadSHA256 string, now time.Time) {
	now = now.UTC()
	stamp := now.Format("20060102T150405Z")
	day := stamp[:8]
	req.Header.Set("X-Amz-Date", stamp)
	req.Header.Set("X-Amz-Content-Sha256", payloadSHA256)

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for name, values := range req.Header {
		trimmed := make([]string, len(values))
		for i, v := range values {
			trimmed[i] = strings.Join(strings.Fields(v), " ")
		}
		headers[strings.ToLower(name)] = strings.Join(trimmed, ",")
	}
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	var canon strings.Builder
	canon.WriteString(req.Method + "\n")
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon.WriteString(path + "\n")
	canon.WriteString(req.URL.RawQuery + "\n")
	for _, name := range names {
		canon.WriteString(name + ":" + headers[name] + "\n")
	}
	signed := strings.Join(names, ";")
	canon.WriteString("\n" + signed + "\n" + payloadSHA256)

	scope := day + "/" + s.region + "/s3/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + stamp + "\n" + scope + "\n" + hexSHA256([]byte(canon.String()))
	key := hmacSHA256([]byte("AWS4"+s.secretKey), day)
	key = hmacSHA256(key, s.region)
	key = hmacSHA256(key, "s3")
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.accessKey+"/"+scope+
		",SignedHeaders="+signed+",Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// escape is RFC 3986 percent-encoding as SigV4 wants it: every byte but
// the unreserved characters, and "/" too unless keepSlash.
func escape(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/' && keepSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// canonicalQuery is the query string sorted by escaped name, each name
// and value escaped; a parameter without a value is written "name=".
func canonicalQuery(params map[string]string) string {
	names := make([]string, 0, len(params))
	escaped := make(map[string]string, len(params))
	for k := range params {
		e := escape(k, false)
		names = append(names, e)
		escaped[e] = k
	}
	slices.Sort(names)
	pairs := make([]string, len(names))
	for i, e := range names {
		pairs[i] = e + "=" + escape(params[escaped[e]], false)
	}
	return strings.Join(pairs, "&")
}
