package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/enroll"
)

// app is the wired engine: models loaded, database open and migrated.
type app struct {
	recognizer *facerec.Recognizer
	stills     *still.Analyzer
	gallery    *gallery.Gallery
	identifier *engine.Identifier
	enroller   *enroll.Service
	registry   *enroll.Registry // officers' registrations with audit (bulk enrolment)
	loadModels time.Duration
	openDB     time.Duration
}

func openApp(ctx context.Context, cfg Config) (*app, error) {
	a := &app{}
	start := time.Now()
	g, applied, err := gallery.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w\n(is the database running? `make db` starts the project-local cluster)", err)
	}
	a.openDB = time.Since(start)
	a.gallery = g
	for _, m := range applied {
		slog.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	start = time.Now()
	rec, err := facerec.New(facerec.Config{ModelDir: cfg.ModelDir, Detector: cfg.Detector})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("%w\n(`loopgate models fetch` fills the model directory)", err)
	}
	a.recognizer = rec
	// Stills are detected and cropped as the walk-through pipeline does
	// camera frames: YuNet on the full-resolution photo, go-face per crop.
	stills, err := still.New(still.Config{ModelDir: cfg.ModelDir, Limits: engine.DefaultImageLimits}, rec)
	if err != nil {
		rec.Close()
		g.Close()
		return nil, fmt.Errorf("%w\n(`loopgate models fetch` fills the model directory)", err)
	}
	a.loadModels = time.Since(start)
	a.stills = stills
	a.identifier = &engine.Identifier{
		Stills: stills, Searcher: g,
		Model: rec.ModelTag(), Threshold: cfg.Threshold,
	}
	a.enroller = &enroll.Service{Stills: stills, Store: g, Model: rec.ModelTag()}
	// Templates only: the CLI keeps no enrolment photos.
	a.registry, err = enroll.NewRegistry(enroll.RegistryConfig{Pool: g.Pool(), Checker: &enroll.Service{Stills: stills, Model: rec.ModelTag()}})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) Close() {
	a.stills.Close()
	a.recognizer.Close()
	a.gallery.Close()
}
