// Package web holds the browser client (bridge.js, an ES module with no build step, and
// its TypeScript declarations) and the demo page, embedded in the binary.
package web

import "embed"

// FS holds index.html (the demo page), bridge.js and bridge.d.ts.
//
//go:embed index.html bridge.js bridge.d.ts
var FS embed.FS
