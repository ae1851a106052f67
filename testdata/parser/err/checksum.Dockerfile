FROM alpine
ADD --checksum=md5:abc https://example.com/x /x
