-- The two application tables the dashboard queries read (as in production), for tests and bench:db.
create table if not exists user_events (
  id bigserial primary key,
  user_id bigint not null,
  event_type text not null,
  "timestamp" timestamptz not null default now(),
  payload jsonb
);
create table if not exists transactions (
  id bigserial primary key,
  account_id bigint not null,
  status text not null,
  amount_cents bigint not null,
  created_at timestamptz not null default now()
);
