package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/web"
)

// assetTypes are the content types of the embedded files; .ts is not in every mime
// table (some map it to MPEG transport streams).
var assetTypes = map[string]string{
	"index.html":  "text/html; charset=utf-8",
	"bridge.js":   "text/javascript; charset=utf-8",
	"bridge.d.ts": "text/plain; charset=utf-8",
}

// handleAsset serves one embedded file of web/. no-cache makes browsers revalidate, so
// a deploy reaches every page on its next load.
func handleAsset(name string) echo.HandlerFunc {
	b, err := web.FS.ReadFile(name)
	if err != nil {
		panic("web: " + name + " is not embedded: " + err.Error())
	}
	typ := assetTypes[name]
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-cache")
		return c.Blob(http.StatusOK, typ, b)
	}
}
