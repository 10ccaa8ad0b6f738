module github.com/heraldhq/herald/services/herald

go 1.26.8
