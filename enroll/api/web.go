package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The officers' enrolment page: plain HTML, CSS and JS, embedded; no build
// step and nothing fetched from elsewhere.
//
//go:embed web
var webFS embed.FS

// webCSP allows only the page's own files. The camera preview is a
// MediaStream (srcObject, no URL) and captures are shown on canvases;
// blob: is for the thumbnails of kept photos.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob: mediastream:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// webPermissions lets the page (and only the page's origin) use the camera.
const webPermissions = "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), display-capture=()"

// webHandler serves the enrolment page at /, its login page at /login and
// its assets under /static/. Whether the browser is logged in is the page's
// business (it asks GET /api/v1/session and goes to /login on 401): the
// files themselves hold no data.
func webHandler() http.Handler {
	etags := map[string]string{}
	err := fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[p] = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		// The files are compiled in: this cannot happen in a built binary.
		panic("enroll/api: embedded web files: " + err.Error())
	}

	page := func(name string) http.Handler {
		file := "web/" + name
		body, err := webFS.ReadFile(file)
		if err != nil {
			panic("enroll/api: embedded page " + file + ": " + err.Error())
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", etags[file])
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
		})
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic("enroll/api: embedded static files: " + err.Error())
	}
	files := http.FileServerFS(static)
	assets := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel := strings.TrimPrefix(r.URL.Path, "/static/")
		tag, ok := etags[path.Join("web/static", rel)]
		if !ok || rel == "" || strings.HasSuffix(rel, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("ETag", tag) // lets the file server answer 304
		http.StripPrefix("/static", files).ServeHTTP(w, r)
	})

	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page("index.html"))
	mux.Handle("GET /login", page("login.html"))
	mux.Handle("GET /static/", assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// no-cache: the browser revalidates (ETag), so an upgrade never
		// runs old JS against a new API.
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", webCSP)
		h.Set("Permissions-Policy", webPermissions)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		mux.ServeHTTP(w, r)
	})
}
