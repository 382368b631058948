package handlers

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/presence"
)

// errPresenceRead answers an inspection while the shared state cannot be read.
func errPresenceRead(err error) error {
	return &Error{Status: http.StatusServiceUnavailable, Msg: "presence unavailable: " + err.Error(), RetryAfter: "2"}
}

// instancesAnswer is GET /api/instances.
type instancesAnswer struct {
	Instances []presence.Instance `json:"instances"` // live instances, ordered by id
}

// handleInstances lists the live instances: id, start time, connections at the last beat.
func handleInstances(is presence.Instances) echo.HandlerFunc {
	return func(c echo.Context) error {
		list, err := is.List(c.Request().Context())
		if err != nil {
			return errPresenceRead(err)
		}
		if list == nil {
			list = []presence.Instance{}
		}
		return c.JSON(http.StatusOK, instancesAnswer{Instances: list})
	}
}

// userConn is one connection of a user, as GET /api/presence/:userId shows it.
type userConn struct {
	Instance  string    `json:"instance"`
	Transport string    `json:"transport"`
	Since     time.Time `json:"since"`
}

type userPresenceAnswer struct {
	User        string     `json:"user"`
	Connections []userConn `json:"connections"` // ordered by instance, then age
}

// handleUserPresence lists a user's connections on every live instance.
func handleUserPresence(dir presence.Directory) echo.HandlerFunc {
	return func(c echo.Context) error {
		user := c.Param("userId")
		if err := presence.CheckUserID(user); err != nil {
			return &Error{Status: http.StatusBadRequest, Msg: err.Error()}
		}
		es, err := dir.Lookup(c.Request().Context(), user)
		if err != nil {
			return errPresenceRead(err)
		}
		out := userPresenceAnswer{User: user, Connections: make([]userConn, len(es))}
		for i, e := range es {
			out.Connections[i] = userConn{Instance: e.Instance, Transport: e.Transport, Since: e.Since}
		}
		return c.JSON(http.StatusOK, out)
	}
}

// instanceCounts is one live instance in GET /api/presence.
type instanceCounts struct {
	ID    string `json:"id"`
	Users int    `json:"users"` // distinct users with a connection there
	Conns int    `json:"conns"` // connections at its last heartbeat
}

type presenceAnswer struct {
	Instances []instanceCounts `json:"instances"` // ordered by id
	Users     int              `json:"users"`     // sum over instances: a user on two counts twice
	Conns     int              `json:"conns"`
}

// handlePresence counts, per live instance, its users and connections.
func handlePresence(is presence.Instances, dir presence.Directory) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		list, err := is.List(ctx)
		if err != nil {
			return errPresenceRead(err)
		}
		users, err := dir.Users(ctx)
		if err != nil {
			return errPresenceRead(err)
		}
		out := presenceAnswer{Instances: make([]instanceCounts, len(list))}
		for i, in := range list {
			out.Instances[i] = instanceCounts{ID: in.ID, Users: users[in.ID], Conns: in.Conns}
			out.Users += users[in.ID]
			out.Conns += in.Conns
		}
		return c.JSON(http.StatusOK, out)
	}
}
