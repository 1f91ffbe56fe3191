-- A user's activity history, newest first (GET /v1/wallets/{user_id}/activities, GET /wallet/activities).
CREATE INDEX IF NOT EXISTS issuance_activities_by_user ON issuance_activities (user_id, created_at DESC, id DESC);
