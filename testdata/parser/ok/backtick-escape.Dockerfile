# escape=`
# check=skip=JSONArgsRecommended;error=false
FROM mcr.microsoft.com/windows/servercore
RUN Write-Host `
    C:\path\with\backslashes
COPY C:\src\ C:\dst\
CMD powershell -Command `
  Get-Date
