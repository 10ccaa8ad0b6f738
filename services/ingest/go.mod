module github.com/heraldhq/herald/services/ingest

go 1.26.8
