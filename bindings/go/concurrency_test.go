package tokenchecker_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

func TestThousandGoroutinesOneIntrospection(t *testing.T) {
	// With latency the request is in flight while the goroutines pile up behind it
	// (coalescing); without, most of them find the answer cached.
	for _, latency := range []int{200, 0} {
		t.Run(fmt.Sprintf("latency %d ms", latency), func(t *testing.T) {
			thousandGoroutines(t, latency)
		})
	}
}

func thousandGoroutines(t *testing.T, latencyMS int) {
	c := newChecker(t)
	tok := newToken(t, nil)
	if latencyMS > 0 {
		setFault(t, fakeglobus.Fault{Endpoint: "introspect", LatencyMS: latencyMS})
	}
	before := counters(t).Introspect
	const n = 1000
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	sources := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, info, err := c.CheckInfo(ctx, tok)
			if err != nil {
				errs <- err
				return
			}
			if s.Sub != fakeglobus.AliceID {
				errs <- errors.New("wrong sub " + s.Sub)
			}
			sources[i] = info.CacheSource
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := counters(t).Introspect - before; got != 1 {
		t.Fatalf("%d goroutines made %d introspection requests, want 1", n, got)
	}
	bySource := map[string]int{}
	for _, s := range sources {
		bySource[s]++
	}
	if bySource["network"] != 1 {
		t.Fatalf("sources %v", bySource)
	}
	t.Logf("sources: %v", bySource)
}

// Close while checks are in flight, cached and not: no crash, and every check either
// succeeds or reports ErrClosed.
func TestCloseRacesInFlightChecks(t *testing.T) {
	for round := 0; round < 5; round++ {
		c, err := tokenchecker.New(config())
		if err != nil {
			t.Fatal(err)
		}
		cached := newToken(t, nil)
		if _, err := c.Check(ctx, cached); err != nil {
			t.Fatal(err)
		}
		slow := newToken(t, nil) // not cached: goes async
		var ok, closed atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var failures sync.Map
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					var err error
					switch i % 4 {
					case 0, 1:
						_, err = c.Check(ctx, cached)
					case 2:
						_, err = c.Check(ctx, slow)
					case 3:
						_, err = c.Authorize(ctx, cached, []string{"urn:globus:auth:identity:" + fakeglobus.AliceID}, tokenchecker.AuthorizeOptions{})
					}
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, tokenchecker.ErrClosed):
						closed.Add(1)
						return
					default:
						failures.Store(err.Error(), true)
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		var cw sync.WaitGroup
		for i := 0; i < 3; i++ { // concurrent Closes too
			cw.Add(1)
			go func() { defer cw.Done(); c.Close() }()
		}
		cw.Wait()
		time.Sleep(5 * time.Millisecond)
		close(stop)
		wg.Wait()
		failures.Range(func(k, _ any) bool { t.Errorf("unexpected error: %v", k); return true })
		if closed.Load() == 0 || ok.Load() == 0 {
			t.Fatalf("round %d: %d ok, %d closed: the race was not exercised", round, ok.Load(), closed.Load())
		}
		runtime.GC()
	}
}

// An async check started before Close completes normally after it.
func TestAsyncCheckOutlivesClose(t *testing.T) {
	c, err := tokenchecker.New(config())
	if err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "introspect", LatencyMS: 300})
	done := make(chan error, 1)
	go func() {
		_, err := c.Check(ctx, tok)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("the check started before Close: %v", err)
	}
}

// Checkers that are never closed are released by the garbage collector without harm.
func TestUnclosedCheckersAreCollected(t *testing.T) {
	tok := newToken(t, nil)
	for i := 0; i < 50; i++ {
		c, err := tokenchecker.New(config())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Check(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
