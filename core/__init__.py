"""The bottom layer under auth/: settings, the database engine and the request's unit of work,
global ids, domain errors, the outbox, logs, migrations and payment-provider clients. Imports
nothing of Kabinet but models/."""
