-- The read replica's lag (schema/replica_store.py): the primary's WAL position, then the
-- replica's replay position and clock. Compared as LSNs, not by the replay timestamp
-- alone: with the primary idle that timestamp only ages, the replica caught up.

-- name: replica_primary_lsn
-- Where the primary's WAL ends now (read before the replica's, so a replica that has
-- replayed up to it was caught up at that instant).
SELECT pg_current_wal_lsn()::text AS lsn;

-- name: replica_replay_state
-- The standby's replay position, the commit time of the last transaction it replayed
-- (the primary's clock), its own clock, and whether replay is paused.
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_last_xact_replay_timestamp() AS replayed_commit_at,
       now() AS now,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END
           AS replay_paused;
