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
// the default 30 s, which a run with -count 5 outlasts (the raw baseline, which cannot
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
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Authorize(ctx, tok, []string{alice2}, tokenchecker.AuthorizeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckCachedOverhead measures what Check adds to the raw calls through cgo
// (BenchmarkTryCheckAnswerRaw) on a busy machine: blocks of Checks alternate with blocks of
// raw calls, so both see the same load. overhead-ns/op is the mean difference per call (it
// includes the garbage collection of Check's results), median-overhead-ns/op the median over
// the blocks (most blocks see no collection); ns/op is the time of one Check plus one raw call.
func BenchmarkCheckCachedOverhead(b *testing.B) {
	c, tok := benchToken(b)
	const block = 256
	var diffs []float64
	var total time.Duration
	for n := 0; n < b.N; n += block {
		t0 := time.Now()
		for i := 0; i < block; i++ {
			if _, err := c.Check(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		k := 0
		if st := tokenchecker.RawTryCheckAnswer(c, tok, func() bool { k++; return k <= block }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
		d := t1.Sub(t0) - time.Since(t1)
		total += d
		diffs = append(diffs, float64(d)/block)
	}
	slices.Sort(diffs)
	b.ReportMetric(float64(total)/float64(len(diffs)*block), "overhead-ns/op")
	b.ReportMetric(diffs[len(diffs)/2], "median-overhead-ns/op")
}

// BenchmarkTryCheckAnswerRaw is the baseline: tc_try_check_answer and tc_answer_free through
// cgo, without the binding's work.
func BenchmarkTryCheckAnswerRaw(b *testing.B) {
	c, tok := benchToken(b)
	b.Run("serial", func(b *testing.B) {
		n := 0
		if st := tokenchecker.RawTryCheckAnswer(c, tok, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			if st := tokenchecker.RawTryCheckAnswer(c, tok, pb.Next); st != tokenchecker.StatusOK {
				b.Error(st)
			}
		})
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
