package demo_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/huddle-rtc/huddle/demo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve starts the demo handler on a loopback server for one test.
func serve(t *testing.T) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(demo.Handler())
	c := srv.Client()
	c.Transport.(*http.Transport).DisableCompression = true
	t.Cleanup(func() {
		c.CloseIdleConnections()
		srv.Close()
	})
	return srv, c
}

func get(t *testing.T, c *http.Client, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func TestServesFiles(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", "<!doctype html>"},
		{"/?room=abc&autojoin=1", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/index.html", "text/html; charset=utf-8", "<title>huddle</title>"},
		{"/huddle.js", "text/javascript; charset=utf-8", "export class Huddle extends EventTarget"},
		{"/app.js", "text/javascript; charset=utf-8", `import { Huddle } from "./huddle.js";`},
		{"/style.css", "text/css; charset=utf-8", ".tile"},
	}
	for _, tc := range cases {
		res, body := get(t, c, http.MethodGet, srv.URL+tc.path, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", tc.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", tc.path, got)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tc.path, got)
		}
		if res.Header.Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", tc.path)
		}
		if res.Header.Get("Last-Modified") != "" {
			t.Errorf("GET %s: Last-Modified %q from an embedded file", tc.path, res.Header.Get("Last-Modified"))
		}
		if !bytes.Contains(body, []byte(tc.contains)) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
}

// TestPageReferencesResolve checks that every file the page and its
// scripts load is served, so a renamed file cannot break the page unseen.
func TestPageReferencesResolve(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	refs := regexp.MustCompile(`(?:src|href)="([^":]+)"|from "([^"]+)"`)
	seen := 0
	for _, page := range []string{"/", "/app.js"} {
		_, body := get(t, c, http.MethodGet, srv.URL+page, nil)
		for _, m := range refs.FindAllSubmatch(body, -1) {
			ref := "/" + strings.TrimPrefix(strings.TrimPrefix(string(m[1])+string(m[2]), "."), "/")
			seen++
			if res, _ := get(t, c, http.MethodGet, srv.URL+ref, nil); res.StatusCode != http.StatusOK {
				t.Errorf("%s references %s, which answers %d", page, ref, res.StatusCode)
			}
		}
	}
	if seen < 3 {
		t.Errorf("found %d references, want at least 3 (style.css, app.js, huddle.js)", seen)
	}
}

func TestConditionalGet(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	first, body := get(t, c, http.MethodGet, srv.URL+"/huddle.js", nil)
	etag := first.Header.Get("ETag")
	res, again := get(t, c, http.MethodGet, srv.URL+"/huddle.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: status %d, want 304", etag, res.StatusCode)
	}
	if len(again) != 0 {
		t.Errorf("304 with a %d-byte body", len(again))
	}
	res, again = get(t, c, http.MethodGet, srv.URL+"/huddle.js", map[string]string{"If-None-Match": `"stale"`})
	if res.StatusCode != http.StatusOK || !bytes.Equal(again, body) {
		t.Errorf("stale ETag: status %d, %d bytes; want 200 and the file", res.StatusCode, len(again))
	}
	_, other := get(t, c, http.MethodGet, srv.URL+"/app.js", nil)
	if bytes.Equal(other, body) {
		t.Fatal("app.js and huddle.js are the same")
	}
	res, _ = get(t, c, http.MethodGet, srv.URL+"/app.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusOK {
		t.Errorf("app.js with huddle.js's ETag: status %d, want 200", res.StatusCode)
	}
}

func TestGzip(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	_, plain := get(t, c, http.MethodGet, srv.URL+"/huddle.js", nil)
	cases := []struct {
		accept string
		gz     bool
	}{
		{"gzip", true},
		{"br, gzip;q=0.5", true},
		{"*", true},
		{"gzip;q=0", false},
		{"gzip; q=0.000", false},
		{"*;q=0, gzip", true},
		{"gzip;q=0, *", false},
		{"identity", false},
		{"", false},
	}
	for _, tc := range cases {
		res, body := get(t, c, http.MethodGet, srv.URL+"/huddle.js", map[string]string{"Accept-Encoding": tc.accept})
		if !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: Vary %q", tc.accept, res.Header.Get("Vary"))
		}
		gotGz := res.Header.Get("Content-Encoding") == "gzip"
		if gotGz != tc.gz {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", tc.accept, gotGz, tc.gz)
			continue
		}
		if gotGz {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			body, err = io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(body, plain) {
			t.Errorf("Accept-Encoding %q: body differs from the plain file", tc.accept)
		}
	}
	gz, _ := get(t, c, http.MethodGet, srv.URL+"/huddle.js", map[string]string{"Accept-Encoding": "gzip"})
	id, _ := get(t, c, http.MethodGet, srv.URL+"/huddle.js", nil)
	if gz.Header.Get("ETag") == id.Header.Get("ETag") {
		t.Errorf("gzip and identity share the ETag %s", id.Header.Get("ETag"))
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	for _, path := range []string{"/nope", "/ws", "/index.htm", "/huddle.js/", "/demo.go", "/.git/config", "/style.css/../demo.go"} {
		if res, _ := get(t, c, http.MethodGet, srv.URL+path, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, res.StatusCode)
		}
	}
	res, _ := get(t, c, http.MethodPost, srv.URL+"/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: status %d, Allow %q; want 405 and GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
	res, body := get(t, c, http.MethodHead, srv.URL+"/app.js", nil)
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.ContentLength <= 0 {
		t.Errorf("HEAD /app.js: status %d, body %d bytes, Content-Length %d", res.StatusCode, len(body), res.ContentLength)
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	srv, c := serve(t)
	res, _ := get(t, c, http.MethodGet, srv.URL+"/", nil)
	host := strings.TrimPrefix(srv.URL, "http://")
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "connect-src 'self' ws://" + host + " wss://" + host, "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("the page is served with CORS")
	}
	res, _ = get(t, c, http.MethodGet, srv.URL+"/huddle.js", nil)
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("huddle.js: Access-Control-Allow-Origin %q, want * (apps may import it)", got)
	}
	if res.Header.Get("Content-Security-Policy") != "" {
		t.Error("huddle.js carries the page's CSP")
	}

	// A Host that is not a plain host[:port] stays out of the policy.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "evil.example; script-src *"
	demo.Handler().ServeHTTP(rec, req)
	if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("CSP with a hostile Host: %q", csp)
	}
}
