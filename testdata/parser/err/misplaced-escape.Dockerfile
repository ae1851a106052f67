# a comment first
# escape=`
FROM alpine
