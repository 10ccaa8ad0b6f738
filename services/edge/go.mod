module github.com/heraldhq/herald/services/edge

go 1.26.8
