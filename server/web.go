package server

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
)

// The operator pages: plain HTML, CSS and JS, embedded; no build step and
// nothing fetched from elsewhere (the CSP allows only 'self').
//
//go:embed web
var webFS embed.FS

func loadWeb() (*template.Template, fs.FS, error) {
	pages, err := template.ParseFS(webFS, "web/*.html")
	if err != nil {
		return nil, nil, fmt.Errorf("server: page templates: %w", err)
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return nil, nil, fmt.Errorf("server: static files: %w", err)
	}
	return pages, static, nil
}

// staticHandler serves the embedded assets; no-cache makes a browser
// revalidate, so a node upgrade never runs old JS against a new API.
func staticHandler(static fs.FS) http.Handler {
	files := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
