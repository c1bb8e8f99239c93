package tokenchecker_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

// benchToken is a token whose check is cached. The cache keeps it for 30 minutes rather than
// the default 30 s, which a run with -count 5 outlasts (the raw baselines, which cannot
// refresh it, then measured TC_WOULD_BLOCK answers and failed).
func benchToken(b *testing.B) (*tokenchecker.Checker, string) {
	c := newChecker(b, func(cfg *tokenchecker.Config) {
		cfg.CacheConfig = &tokenchecker.CacheConfig{Backend: "memory", Timeout: 30 * time.Minute}
	})
	tok := newToken(b, nil)
	if _, err := c.Check(ctx, tok); err != nil {
		b.Fatal(err)
	}
	return c, tok
}

func BenchmarkCheckCached(b *testing.B) {
	c, tok := benchToken(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Check(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Check(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkAuthorizeCached(b *testing.B) {
	c, tok := benchToken(b)
	const alice2 = "urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000002"
	b.Run("go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Authorize(ctx, tok, []string{alice2}, tokenchecker.AuthorizeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline: the blocking tc_authorize alone, through cgo.
	b.Run("raw-tc_authorize", func(b *testing.B) {
		n := 0
		req := `{"allowed_principals":["` + alice2 + `"]}`
		if st := tokenchecker.RawAuthorize(c, tok, req, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
}

// BenchmarkCheckCachedOverhead measures what Check adds to the raw tc_try_check call through
// cgo (BenchmarkTryCheckRawC/cgo) on a busy machine: blocks of Checks alternate with blocks
// of raw calls, and overhead-ns/op is the median, over the blocks, of the difference per call
// (ns/op is the time of one Check plus one raw call).
func BenchmarkCheckCachedOverhead(b *testing.B) {
	c, tok := benchToken(b)
	const block = 256
	var diffs []float64
	for n := 0; n < b.N; n += block {
		t0 := time.Now()
		for i := 0; i < block; i++ {
			if _, err := c.Check(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		k := 0
		if st := tokenchecker.RawTryCheck(c, tok, func() bool { k++; return k <= block }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
		diffs = append(diffs, float64(t1.Sub(t0)-time.Since(t1))/block)
	}
	slices.Sort(diffs)
	b.ReportMetric(diffs[len(diffs)/2], "overhead-ns/op")
}

// BenchmarkTryCheckRawC is the baseline: tc_try_check through cgo without the binding's
// work ("cgo"), and in a C loop without even the cgo transition ("c-loop").
func BenchmarkTryCheckRawC(b *testing.B) {
	c, tok := benchToken(b)
	b.Run("cgo", func(b *testing.B) {
		n := 0
		if st := tokenchecker.RawTryCheck(c, tok, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
	b.Run("cgo-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			if st := tokenchecker.RawTryCheck(c, tok, pb.Next); st != tokenchecker.StatusOK {
				b.Error(st)
			}
		})
	})
	b.Run("c-loop", func(b *testing.B) {
		if st := tokenchecker.RawTryCheckCLoop(c, tok, b.N); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
}

// discard is a ResponseWriter that keeps only the status, so that the benchmark measures the
// middleware rather than httptest.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }

func BenchmarkMiddleware(b *testing.B) {
	c, tok := benchToken(b)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, found := tokenchecker.FromContext(r.Context()); !found {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	h := c.Middleware(ok)
	run := func(b *testing.B, auth string, want int) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			for pb.Next() {
				w.status = http.StatusOK
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != want {
					b.Errorf("status %d", w.status)
					return
				}
			}
		})
	}
	b.Run("valid", func(b *testing.B) { run(b, "Bearer "+tok, http.StatusOK) })
	b.Run("missing-header", func(b *testing.B) { run(b, "", http.StatusUnauthorized) })
	b.Run("inactive-cached", func(b *testing.B) { run(b, "Bearer tok-inactive", http.StatusUnauthorized) })
}
