package tokenchecker

/*
#include "tokenchecker.h"
*/
import "C"

import (
	"encoding/json"
	"time"
)

// Statistics are the library's process-wide counters (all checkers together).
type Statistics struct {
	Checks         uint64 `json:"checks"`
	Hits           uint64 `json:"hits"`
	NegativeHits   uint64 `json:"negative_hits"`
	Misses         uint64 `json:"misses"`
	CoalescedWaits uint64 `json:"coalesced_waits"`
	WaiterTimeouts uint64 `json:"waiter_timeouts"`
	Purges         uint64 `json:"purges"`
	CacheResets    uint64 `json:"cache_resets"`
	Requests       struct {
		Introspect     uint64 `json:"introspect"`
		DependentToken uint64 `json:"dependent_token"`
		Groups         uint64 `json:"groups"`
		Retries        uint64 `json:"retries"`
	} `json:"requests"`
	Errors struct {
		Introspect     uint64 `json:"introspect"`
		DependentToken uint64 `json:"dependent_token"`
		Groups         uint64 `json:"groups"`
		Backend        uint64 `json:"backend"`
	} `json:"errors"`
	Backend struct {
		Hits            uint64 `json:"hits"`
		Misses          uint64 `json:"misses"`
		RejectedEntries uint64 `json:"rejected_entries"`
		BreakerSkips    uint64 `json:"breaker_skips"`
		LockAcquired    uint64 `json:"lock_acquired"`
		LockWaits       uint64 `json:"lock_waits"`
	} `json:"backend"`
	// StaleServed counts answers served stale (CacheSource "stale", Config.StaleIfErrorS).
	StaleServed uint64 `json:"stale_served"`
	// RequestsShed counts requests refused for want of a slot (Config.MaxConcurrentRequests).
	RequestsShed uint64 `json:"requests_shed"`

	Cache struct {
		Backend      string        `json:"backend"`
		Timeout      time.Duration `json:"-"`
		TimeoutS     float64       `json:"timeout_s"`
		LocalEntries uint64        `json:"local_entries"`
		InFlight     uint64        `json:"in_flight"`
	} `json:"cache"`

	// Raw is the whole document, including counters newer than this binding.
	Raw map[string]any `json:"-"`
}

// Stats returns the library's process-wide counters.
func Stats() (*Statistics, error) {
	var out *C.char
	status := Status(C.tc_stats(&out))
	doc := takeDoc(out)
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var s Statistics
	if err := json.Unmarshal(doc, &s); err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's stats document did not decode: " + err.Error()}
	}
	if err := json.Unmarshal(doc, &s.Raw); err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's stats document did not decode: " + err.Error()}
	}
	s.Cache.Timeout = time.Duration(s.Cache.TimeoutS * float64(time.Second))
	return &s, nil
}
