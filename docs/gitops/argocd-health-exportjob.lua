-- Argo CD health check for ferry.dev/ExportJob.
--
-- Install: docs/gitops/argocd-cm.yaml (key resource.customizations.health.ferry.dev_ExportJob).
-- Why each rule is what it is: docs/gitops.md, "Argo CD health".
-- Tested by tests/unit/test_gitops_health.py, which runs this file the way Argo CD does.
--
-- Plain Lua 5.1 for gopher-lua. Argo CD runs custom health scripts with only the base,
-- table, package and a reduced os library: no string library, so no string.format,
-- string.find or ("x"):sub(). Only .., tostring, ipairs and comparisons below.
--
-- Precedence, first match wins:
--   no status / no observedGeneration           Progressing  waiting for the operator
--   being deleted                               Progressing  (a run in progress holds it)
--   metadata.generation > observedGeneration    Progressing  operator has not seen the edit
--   condition Ready=False                       Degraded     reason: message (what to fix)
--   condition Ready=Unknown                     Progressing
--   condition Stalled=True                      Degraded
--   a run is Queued/AwaitingDependency/InProgress  Healthy   a running export is not unhealthy
--   phase Suspended (spec.suspend)              Suspended
--   last run Failed or PartiallySucceeded       Degraded     the run's message + what to do
--   otherwise (Succeeded, Canceled, Scheduled, Drafted)  Healthy

local hs = {}

local function find_condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function explain(condition)
  local reason = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

local function describe_run(status, run)
  local text = "Run " .. tostring(run.id) .. " is " .. tostring(run.phase)
  if run.phase == "InProgress" then
    if status.progress ~= nil then
      text = text .. ", " .. status.progress
    end
    if status.eta ~= nil then
      text = text .. ", ETA " .. status.eta
    end
  end
  if run.message ~= nil and run.message ~= "" then
    text = text .. ": " .. run.message
  end
  return text
end

local function describe_last(last)
  local text = "Last run " .. tostring(last.id) .. " " .. tostring(last.phase)
  if last.message ~= nil and last.message ~= "" then
    text = text .. ": " .. last.message
  end
  return text
end

local metadata = obj.metadata or {}
local name = metadata.name or "JOB"
local status = obj.status

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator: the ExportJob has no status yet"
  return hs
end

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if status.currentRun ~= nil and status.currentRun.message ~= nil then
    hs.message = "Being deleted: " .. status.currentRun.message
  else
    hs.message = "Being deleted"
  end
  return hs
end

if metadata.generation ~= nil and status.observedGeneration < metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(metadata.generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local ready = find_condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(ready)
  return hs
end
if ready ~= nil and ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = explain(ready)
  return hs
end

local stalled = find_condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled)
  return hs
end

local run = status.currentRun
if run ~= nil then
  -- Healthy, not Progressing: exports run for hours, and Argo CD waits on Progressing
  -- resources during a sync (sync waves), so every sync would block on the export.
  hs.status = "Healthy"
  hs.message = describe_run(status, run)
  return hs
end

local last = status.lastRun

if status.phase == "Suspended" then
  hs.status = "Suspended"
  local suspended = find_condition(status, "Suspended")
  if suspended ~= nil and suspended.message ~= nil and suspended.message ~= "" then
    hs.message = suspended.message
  else
    hs.message = "spec.suspend is true: no new scheduled runs"
  end
  if last ~= nil then
    hs.message = hs.message .. "; last run " .. tostring(last.id) .. " " .. tostring(last.phase)
  end
  return hs
end

if last ~= nil and (last.phase == "Failed" or last.phase == "PartiallySucceeded") then
  hs.status = "Degraded"
  hs.message = describe_last(last) .. " (error report: kubectl ferry errors " .. name
    .. "; re-run the failed batches: kubectl ferry retry " .. name .. ")"
  return hs
end

hs.status = "Healthy"
if last ~= nil then
  hs.message = describe_last(last)
elseif status.phase == "Scheduled" then
  hs.message = "Scheduled, no run yet"
else
  hs.message = "Drafted: never run"
end
if last == nil and status.scheduleSummary ~= nil then
  hs.message = hs.message .. " (" .. status.scheduleSummary .. ")"
end
if status.nextRunAt ~= nil then
  hs.message = hs.message .. "; next run at " .. status.nextRunAt
end
return hs
