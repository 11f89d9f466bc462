// Package demo serves the huddle demo page and huddle.js, the reusable
// browser client, from files embedded in the binary: no build step and no
// npm dependency at run time.
//
// The files are served at the root: "/" (index.html), "/huddle.js",
// "/app.js" and "/style.css". Every answer carries an ETag and
// "Cache-Control: no-cache", so browsers revalidate and never run a stale
// client after an upgrade, and the page carries a Content-Security-Policy
// that allows only its own scripts and its own server's WebSocket.
package demo

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

//go:embed index.html huddle.js app.js style.css
var files embed.FS

// asset is one embedded file ready to serve.
type asset struct {
	body   []byte
	gz     []byte // gzip-compressed body, nil when it would not be smaller
	ctype  string
	etag   string
	gzETag string
	page   bool // an HTML page: gets the page's security headers
	cors   bool // may be fetched from other origins (import of huddle.js)
}

type handler struct {
	assets map[string]*asset
}

// Handler returns the handler serving the demo files at the root of a
// server. Paths other than the demo's files get 404, methods other than GET
// and HEAD get 405, so it can be mounted at "/" beside more specific routes.
func Handler() http.Handler {
	h := &handler{assets: make(map[string]*asset)}
	h.add("/index.html", "index.html", "text/html; charset=utf-8", true, false)
	h.add("/huddle.js", "huddle.js", "text/javascript; charset=utf-8", false, true)
	h.add("/app.js", "app.js", "text/javascript; charset=utf-8", false, false)
	h.add("/style.css", "style.css", "text/css; charset=utf-8", false, false)
	return h
}

func (h *handler) add(path, name, ctype string, page, cors bool) {
	body, err := files.ReadFile(name)
	if err != nil {
		// go:embed guarantees the file at compile time.
		panic("demo: embedded file missing: " + name)
	}
	sum := sha256.Sum256(body)
	tag := base64.RawURLEncoding.EncodeToString(sum[:12])
	a := &asset{body: body, ctype: ctype, etag: `"` + tag + `"`, gzETag: `"` + tag + `-gz"`, page: page, cors: cors}
	if gz := compress(body); len(gz) < len(body) {
		a.gz = gz
	}
	h.assets[path] = a
}

func compress(body []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil
	}
	if _, err := zw.Write(body); err != nil {
		return nil
	}
	if err := zw.Close(); err != nil {
		return nil
	}
	return buf.Bytes()
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/" {
		path = "/index.html"
	}
	a, ok := h.assets[path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.ctype)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Add("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, a.gzETag
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("ETag", etag)
	if a.page {
		setPageHeaders(hdr, r.Host)
	}
	if a.cors {
		hdr.Set("Access-Control-Allow-Origin", "*")
	}
	// A zero modtime: the ETag alone drives revalidation (304).
	http.ServeContent(w, r, path, time.Time{}, bytes.NewReader(body))
}

// setPageHeaders sets the security headers of the HTML page. connect-src
// names the server's own ws: and wss: origins besides 'self' for browsers
// whose 'self' does not cover WebSocket schemes.
func setPageHeaders(hdr http.Header, host string) {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src "+connect+"; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Permissions-Policy", "camera=(self), microphone=(self)")
}

// validHost reports whether a Host header is a plain host[:port] that is
// safe to put into a header value.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// acceptsGzip reports whether an Accept-Encoding value accepts gzip (RFC
// 9110 section 12.5.3): an explicit gzip entry wins over "*", and q=0
// refuses.
func acceptsGzip(header string) bool {
	star := false
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.TrimSpace(coding)
		switch {
		case strings.EqualFold(coding, "gzip"):
			return !zeroQ(params)
		case coding == "*":
			star = !zeroQ(params)
		}
	}
	return star
}

// zeroQ reports whether content-coding parameters carry q=0.
func zeroQ(params string) bool {
	for _, p := range strings.Split(params, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
			return strings.Trim(strings.TrimSpace(value), "0.") == ""
		}
	}
	return false
}
