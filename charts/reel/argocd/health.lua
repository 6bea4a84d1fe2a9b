-- Argo CD health check for reel.dev/v1alpha1 RecordingSession.
-- Install it as argocd-cm's resource.customizations.health.reel.dev_RecordingSession (README.md, "Argo CD").
-- Argo CD runs it in gopher-lua (Lua 5.1); tests/unit/test_argocd_health.py runs it in lua5.1 for every phase.
--   Pending, Starting, Stopping, Uploading, a lost recorder being replaced, the room being rejoined: Progressing
--   Recording, Completed: Healthy        Paused: Suspended
--   Failed, BackedUp (some of the recording is only in the backup storage, not backfilled yet): Degraded
local hs = {}

local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

local function said(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
local ready = condition("Ready")
local gap = ready ~= nil and ready.status == "False" and (ready.reason == "Interrupted" or ready.reason == "Reconnecting")

if phase == nil or phase == "Pending" or phase == "Starting" then
  hs.status = "Progressing"
  hs.message = "the recorder is starting"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said(ready, "Failed")
elseif phase == "BackedUp" then
  hs.status = "Degraded"
  hs.message = "some of the recording is only in the backup storage: " .. said(condition("BackedUp"), "BackedUp")
elseif phase == "Completed" then
  hs.status = "Healthy"
  hs.message = "Completed"
  if obj.status.stopReason ~= nil then
    hs.message = "Completed (stop reason " .. obj.status.stopReason .. ")"
  end
elseif gap then
  hs.status = "Progressing"
  hs.message = said(ready, "Interrupted")
elseif phase == "Recording" then
  hs.status = "Healthy"
  hs.message = "recording"
  if obj.status.recordingId ~= nil then
    hs.message = "recording " .. obj.status.recordingId
  end
  local degraded = condition("Degraded")
  if degraded ~= nil and degraded.status == "True" then
    hs.message = hs.message .. "; " .. said(degraded, "Degraded")
  end
  local full = condition("DiskFull")
  if full ~= nil and full.status == "True" then
    hs.message = hs.message .. "; " .. said(full, "DiskFull")
  end
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "paused (spec.paused is true)"
elseif phase == "Stopping" or phase == "Uploading" then
  hs.status = "Progressing"
  hs.message = phase
  if obj.status.stopReason ~= nil then
    hs.message = phase .. " (stop reason " .. obj.status.stopReason .. ")"
  end
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end

-- A spec edit the operator and recorder have not acted on yet (observedGeneration lags): not steady yet.
if hs.status == "Healthy" or hs.status == "Suspended" then
  local generation = obj.metadata ~= nil and obj.metadata.generation or nil
  local observed = obj.status.observedGeneration
  if phase ~= "Completed" and generation ~= nil and observed ~= nil and observed < generation then
    hs.status = "Progressing"
    hs.message = "applying spec generation " .. generation .. " (observed " .. observed .. ")"
  end
end
return hs
