package tokenchecker_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// The benchmarks (README.md, "Overhead"): every one uses one checker whose process-wide cache
// keeps a million entries for 30 minutes, so that the tokens a benchmark fills stay cached for
// the others (a checker with a cache_config replaces the cache) and for runs with -count.
//
//	go test -tags tokenchecker_intree -run xxx -bench . -benchmem
//
// Cached Check (hot) against the raw handle call through cgo (TryCheckAnswerRaw; the
// CheckCachedOverhead benchmark measures the difference in one run), Check cycling 10k and
// 100k distinct cached tokens, Authorize by group cycling 1k and 10k distinct cached callers,
// and the memory the binding adds per cached token at 100k tokens (RSSPerToken).

var bench struct {
	once sync.Once
	c    *tokenchecker.Checker
	err  error
	sets sync.Map // name → *tokenSet
}

type tokenSet struct {
	once sync.Once
	toks []string
}

func benchChecker(b *testing.B) *tokenchecker.Checker {
	bench.once.Do(func() {
		cfg := config()
		cfg.CacheConfig = &tokenchecker.CacheConfig{Backend: "memory", Timeout: 30 * time.Minute,
			Extra: map[string]any{"max_entries": 1_000_000}}
		bench.c, bench.err = tokenchecker.New(cfg)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.c
}

// benchToken is a token whose check is cached.
func benchToken(b *testing.B) (*tokenchecker.Checker, string) {
	c := benchChecker(b)
	tok := newToken(b, nil)
	if _, err := c.Check(ctx, tok); err != nil {
		b.Fatal(err)
	}
	return c, tok
}

// benchGroup is the group every caller of the group benchmarks is a member of.
var benchGroup = tokenchecker.GroupPrincipal(fakeglobus.GroupMember)

// distinctTokens are n tokens of distinct users, members of benchGroup, added to the fake
// once per process and cached by warm (tokens that stay in the fake for the process's life:
// it ends with the fake).
func distinctTokens(b *testing.B, name string, n int, warm func(c *tokenchecker.Checker, tok string) error) []string {
	c := benchChecker(b)
	v, _ := bench.sets.LoadOrStore(name, &tokenSet{})
	set := v.(*tokenSet)
	set.once.Do(func() {
		toks := make([]string, n)
		specs := map[string]fakeglobus.Spec{}
		for i := range toks {
			id := fmt.Sprintf("be0c0000-0000-4000-8000-%012d", i)
			toks[i] = fmt.Sprintf("go-bench-%s-%d-%d", name, os.Getpid(), i)
			specs[toks[i]] = fakeglobus.Spec{"identity_set": []string{id}, "sub": id,
				"username": fmt.Sprintf("user%d@example.org", i), "name": fmt.Sprint("User ", i),
				"exp_in": 7200, "groups": []string{fakeglobus.GroupMember}}
			if len(specs) == 5000 || i == n-1 {
				if err := fake.AddTokens(specs); err != nil {
					b.Fatal(err)
				}
				specs = map[string]fakeglobus.Spec{}
			}
		}
		var wg sync.WaitGroup
		var failed sync.Once
		const workers = 32
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if err := warm(c, toks[i]); err != nil {
						failed.Do(func() { b.Error(err) })
						return
					}
				}
			}()
		}
		wg.Wait()
		set.toks = toks
	})
	if set.toks == nil {
		b.Fatal("the tokens were not cached")
	}
	return set.toks
}

func warmCheck(c *tokenchecker.Checker, tok string) error {
	_, err := c.Check(ctx, tok)
	return err
}

func warmGroup(c *tokenchecker.Checker, tok string) error {
	_, err := c.Authorize(ctx, tok, []string{benchGroup}, tokenchecker.AuthorizeOptions{})
	return err
}

// warmDocument caches a token's check through the result document: the library's cache
// only, nothing built from its answer's fields (RSSPerToken measures what that adds).
func warmDocument(c *tokenchecker.Checker, tok string) error {
	_, _, err := tokenchecker.CheckViaDocument(c, ctx, tok)
	return err
}

// BenchmarkRSSPerToken is the memory the binding adds per cached token at 100k tokens: the
// process's resident memory once the library caches 100k tokens (through the result
// document: nothing built from their answers' fields), then once Check has read every one of
// them twice (the answers' fields, built by the library on the binding's first read and kept
// with each answer, and the memo, within TOKENCHECKER_MEMO_BYTES), each after a garbage
// collection that returns free memory to the system. It comes first (benchmarks run in the
// file's order), so that the memo starts empty, and measures once per process (b.N and later
// runs of -count report the first measurement).
func BenchmarkRSSPerToken(b *testing.B) {
	rssOnce.Do(func() {
		const n = 100_000
		c := benchChecker(b)
		toks := distinctTokens(b, "rss", n, warmDocument)
		k := 0
		if st := tokenchecker.RawTryCheckAnswers(c, toks, nil, false, func() bool { k++; return k <= n }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
		before := rss(b)
		k = 0
		if st := tokenchecker.RawTryCheckAnswers(c, toks, nil, true, func() bool { k++; return k <= n }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
		withFields := rss(b)
		for range 2 {
			for _, tok := range toks {
				if _, err := c.Check(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		}
		after := rss(b)
		_, memoBytes, memoBound := tokenchecker.MemoStats()
		rssMetrics = map[string]float64{"B/token": float64(after-before) / n,
			"fields-B/token": float64(withFields-before) / n, "go-B/token": float64(after-withFields) / n,
			"memo-B/token": float64(memoBytes) / n, "memo-bound-MiB": float64(memoBound) / (1 << 20)}
	})
	for b.Loop() {
	}
	for unit, v := range rssMetrics {
		b.ReportMetric(v, unit)
	}
}

var (
	rssOnce    sync.Once
	rssMetrics map[string]float64
)

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

// BenchmarkCheckCachedOverhead measures what Check adds to the raw call through cgo
// (BenchmarkTryCheckAnswerRaw) in one run, on a busy machine too: blocks of Checks alternate
// with blocks of raw calls, so both see the same load. overhead-ns/op is the mean difference
// per call, median-overhead-ns/op the median over the blocks; ns/op is the time of one Check
// plus one raw call.
func BenchmarkCheckCachedOverhead(b *testing.B) {
	c, tok := benchToken(b)
	const block = 256
	var diffs []float64
	var total time.Duration
	b.ReportAllocs()
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

// BenchmarkCheckDistinct cycles through 10k and 100k cached tokens of distinct users: the
// memo (16 MiB by default) holds some of their states; the others are built from the
// answers' fields.
func BenchmarkCheckDistinct(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n/1000)+"k", func(b *testing.B) {
			c := benchChecker(b)
			toks := distinctTokens(b, "distinct-"+strconv.Itoa(n), n, warmCheck)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Check(ctx, toks[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(toks) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkCheckDistinctRaw is BenchmarkCheckDistinct's baseline: the raw handle call
// cycling through the same tokens, reading each answer's fields (as a memo miss does) or not.
func BenchmarkCheckDistinctRaw(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, fields := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dk/fields=%v", n/1000, fields), func(b *testing.B) {
				c := benchChecker(b)
				toks := distinctTokens(b, "distinct-"+strconv.Itoa(n), n, warmCheck)
				k := 0
				if st := tokenchecker.RawTryCheckAnswers(c, toks, nil, fields, func() bool { k++; return k <= b.N }); st != tokenchecker.StatusOK {
					b.Fatal(st)
				}
			})
		}
	}
}

// BenchmarkAuthorizeGroup authorizes callers cycling through 1k and 10k distinct cached
// tokens with one group rule (each caller is a member of the group; its groups are cached):
// Authorize (the request's compiled policy looked up, the state copied with Matched) and
// AuthorizePolicy (a Policy of the caller's); and the raw handle call, hot.
func BenchmarkAuthorizeGroup(b *testing.B) {
	c := benchChecker(b)
	p, err := tokenchecker.NewPolicy([]string{benchGroup}, tokenchecker.AuthorizeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	allowed := []string{benchGroup}
	for _, n := range []int{1_000, 10_000} {
		name, set := strconv.Itoa(n/1000)+"k", "group-"+strconv.Itoa(n)
		b.Run(name+"/Authorize", func(b *testing.B) {
			toks, i := distinctTokens(b, set, n, warmGroup), 0
			b.ReportAllocs()
			for b.Loop() {
				if s, err := c.Authorize(ctx, toks[i], allowed, tokenchecker.AuthorizeOptions{}); err != nil || s.Matched != benchGroup {
					b.Fatal(err)
				}
				if i++; i == len(toks) {
					i = 0
				}
			}
		})
		b.Run(name+"/AuthorizePolicy", func(b *testing.B) {
			toks, i := distinctTokens(b, set, n, warmGroup), 0
			b.ReportAllocs()
			for b.Loop() {
				if _, info, err := c.AuthorizePolicy(ctx, toks[i], p); err != nil || info.Matched != benchGroup {
					b.Fatal(err)
				}
				if i++; i == len(toks) {
					i = 0
				}
			}
		})
		b.Run(name+"/raw", func(b *testing.B) {
			toks, k := distinctTokens(b, set, n, warmGroup), 0
			if st := tokenchecker.RawTryCheckAnswers(c, toks, p, false, func() bool { k++; return k <= b.N }); st != tokenchecker.StatusOK {
				b.Fatal(st)
			}
		})
	}
	b.Run("hot/AuthorizePolicy", func(b *testing.B) {
		tok := distinctTokens(b, "group-1000", 1_000, warmGroup)[0]
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.AuthorizePolicy(ctx, tok, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hot/raw", func(b *testing.B) {
		toks, n := distinctTokens(b, "group-1000", 1_000, warmGroup)[:1], 0
		if st := tokenchecker.RawTryCheckAnswers(c, toks, p, false, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
}

// rss is the process's resident memory after a garbage collection that returned free memory.
func rss(b *testing.B) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm:", err)
	}
	pages, err := strconv.ParseInt(strings.Fields(string(statm))[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
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
