module github.com/tokenchecker/tokenchecker/bindings/go

go 1.24
