// Package search parses FHIR R4 search requests (FHIR R4 3.1.1, "Search")
// into a typed Query that a store compiles into its own query language, and
// evaluates a Query against one resource in memory (Query.Matches), which
// subscriptions do with each change. It knows the parameter syntax
// (prefixes, modifiers, chains, escaping, result parameters) and what
// each matches, but nothing of storage.
package search

import (
	"github.com/priorflow/priorflow/fhir"
)

// Query is a parsed search on one resource type.
type Query struct {
	Type *fhir.ResourceType
	// Clauses are ANDed (repeated parameters); each clause ORs its values
	// (comma-separated values).
	Clauses []Clause

	Count      int // page size, 0 < Count <= MaxCount (0 with Summary "count")
	Sort       []Sort
	Summary    string // "" | "count" | "true" | "false" | "data" | "text"
	Total      string // "" | "none" | "estimate" | "accurate"
	Include    []Include
	RevInclude []Include
	Elements   []string
	// Cursor continues a paged search (our _cursor parameter).
	Cursor *Cursor
	// Ignored lists parameters dropped under Prefer: handling=lenient.
	Ignored []string
}

// Page size limits (FHIR leaves them to the server).
const (
	DefaultCount = 50
	MaxCount     = 1000
)

// Clause is one search parameter with its values.
type Clause struct {
	Param    *fhir.SearchParam
	Modifier Modifier
	// TargetType restricts a reference parameter (the :Type modifier, or
	// the type named in a chain).
	TargetType string
	// Chain, when set, applies an inner clause to the resources this
	// reference parameter points at (e.g. patient.identifier=...).
	Chain *Clause
	// Missing is set for :missing=true|false.
	Missing *bool
	Values  []Value
}

// Modifier is a search parameter modifier (FHIR R4 3.1.1.5.5).
type Modifier string

const (
	ModNone     Modifier = ""
	ModExact    Modifier = "exact"
	ModContains Modifier = "contains"
	ModNot      Modifier = "not"
	ModMissing  Modifier = "missing"
)

// Prefix is a comparison prefix for ordered types (FHIR R4 3.1.1.4.1).
type Prefix string

const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

// Value is one value of a clause; the field matching the parameter type is set.
type Value struct {
	Prefix Prefix
	// Token search: System and Code; SystemSet is true when the value had a
	// "|" (so "|code" means "no system" and "sys|" means "any code in sys").
	Token     fhir.Token
	SystemSet bool
	String    string
	Date      fhir.DateRange
	Ref       fhir.Ref
	Number    float64
}

// Sort is one _sort key.
type Sort struct {
	Param string // a parameter name, "_id" or "_lastUpdated"
	Desc  bool
}

// Include is one _include or _revinclude: Source:Param[:Target].
type Include struct {
	Source string
	Param  string
	Target string
}

// Cursor is the keyset position after (or before) which a page starts.
type Cursor struct {
	// Key holds the sort key values of the boundary entry, in Sort order,
	// as strings (timestamps in RFC 3339 with nanoseconds).
	Key []string
	// RID is the boundary entry's row id, the final tie-breaker.
	RID int64
	// Before asks for the page before the boundary (a "previous" link).
	Before bool
}

// Result is one page of a search.
type Result struct {
	Matches  []*fhir.Resource
	Included []*fhir.Resource
	// Total is the number of matches across all pages, or -1 when it was
	// not computed.
	Total int
	// Next and Prev position the neighbouring pages; nil when there is none.
	Next *Cursor
	Prev *Cursor
}
