package s3

import (
	"slices"
	"testing"
	"unicode/utf8"
)

func TestParseXML(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#xE9;</Key><Size>3</Size></Contents>
  <Contents><Key><![CDATA[x<y]]></Key></Contents>
  <Contents><Key/></Contents>
  <CommonPrefixes><s3:Prefix>p/</s3:Prefix></CommonPrefixes>
  <Owner id="a>b"><ID>1</ID></Owner>
</ListBucketResult>`
	root, err := parseXML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if root.name != "ListBucketResult" || root.get("IsTruncated") != "true" || root.get("NextContinuationToken") != "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=" {
		t.Errorf("root %q, IsTruncated %q, token %q", root.name, root.get("IsTruncated"), root.get("NextContinuationToken"))
	}
	var keys []string
	for _, c := range root.all("Contents") {
		keys = append(keys, c.get("Key"))
	}
	if want := []string{`a & b <c> "d" 'e' éé`, "x<y", ""}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if got := root.child("CommonPrefixes").get("Prefix"); got != "p/" {
		t.Errorf("prefix = %q", got)
	}
	if got := root.child("Owner").get("ID"); got != "1" {
		t.Errorf("owner id = %q (a '>' in an attribute ends no tag)", got)
	}
	if got := root.get("Missing"); got != "" {
		t.Errorf("a missing element's text = %q", got)
	}
}

func TestParseXMLRefusesBroken(t *testing.T) {
	for _, doc := range []string{
		"", "plain text", "<a>", "<a></b>", "<a>&unknown;</a>", "<a>&#xZZ;</a>", "<a>&amp</a>",
		"<a/><b/>", "<a", "</a>", "<a><![CDATA[x</a>", "<>x</>",
	} {
		if _, err := parseXML([]byte(doc)); err == nil {
			t.Errorf("parseXML(%q) succeeded", doc)
		}
	}
}

func TestEscapeTextRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", `<&>"'`, "line\nend\r\ttab", "é/ü key", "]]>"} {
		root, err := parseXML([]byte("<Key>" + escapeText(s) + "</Key>"))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := root.text.String(); got != s {
			t.Errorf("round trip of %q = %q", s, got)
		}
	}
}

// FuzzParseXML: the reader is our own, fed by whatever answers on the
// remote's address. Any input gives a document or an error, never a panic,
// and valid UTF-8 text written with escapeText reads back as it was (S3
// names are UTF-8; escapeText writes a broken byte as U+FFFD).
func FuzzParseXML(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>a &amp; b</Message></Error>`))
	f.Add([]byte(`<A><B><![CDATA[x<y]]></B><!-- c --><C/></A>`))
	f.Add([]byte(`<A>&#xE9;&#233;</A>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		root, err := parseXML(doc)
		if err != nil {
			return
		}
		text := root.text.String()
		if !utf8.ValidString(text) {
			return
		}
		back, err := parseXML([]byte("<R>" + escapeText(text) + "</R>"))
		if err != nil {
			t.Fatalf("escaped text %q does not parse: %v", text, err)
		}
		if got := back.text.String(); got != text {
			t.Fatalf("text %q read back as %q", text, got)
		}
	})
}
