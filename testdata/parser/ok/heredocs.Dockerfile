# syntax=docker/dockerfile:1
FROM alpine:3.20
RUN <<EOF
echo "hello $USER"
apk add --no-cache curl
EOF
RUN <<-"SCRIPT" sh -e
	echo "no $expansion here"
	exit 0
	SCRIPT
RUN <<A cat > /a && 3<<'B' cat > /b
first
A
second $NOT_EXPANDED
B
COPY <<conf.ini /etc/app/
[app]
name = ${APP_NAME}
conf.ini
ADD <<-EOT /tmp/x.txt
	tabbed
EOT
RUN ["echo", "<<NOT_A_HEREDOC"]
ONBUILD RUN <<EOF
echo onbuild
EOF
