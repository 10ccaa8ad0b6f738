module github.com/heraldhq/herald/services/auth

go 1.26.8
